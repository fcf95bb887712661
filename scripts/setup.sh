#!/usr/bin/env bash
# Installs what a fresh Debian machine needs to build, run and test Ferry.
#   scripts/setup.sh           build and test dependencies
#   scripts/setup.sh --bench   also the benchmark peers (nginx, curl, wget, aria2, hyperfine)
# Runs apt-get only when something is missing, so it is cheap to call again.
set -euo pipefail
packages=(build-essential pkg-config ca-certificates)
if [ "${1:-}" = "--bench" ]; then
  packages+=(nginx-light curl wget aria2 hyperfine time)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi
if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install the Rust toolchain (1.95 or newer), e.g. with rustup" >&2
  exit 1
fi
