#!/usr/bin/env bash
# Installs what a fresh Debian machine needs to build, run and test Ferry.
#   scripts/setup.sh                 build, run and test dependencies
#   scripts/setup.sh --bench         also the benchmark peers (nginx, curl, wget, aria2, hyperfine)
#   scripts/setup.sh --screenshots   also a headless desktop (Xvfb, D-Bus, a notification daemon,
#                                    ImageMagick) for scripts/screenshots.sh
# Runs apt-get only when something is missing, so it is cheap to call again.
set -euo pipefail
# The build needs only a C compiler; the window loads X11/Wayland, GL and D-Bus at run time.
# dbus-daemon: the single-window test starts a private session bus.
packages=(build-essential pkg-config ca-certificates python3 dbus-daemon
  libx11-6 libx11-xcb1 libxcursor1 libxi6 libxrandr2 libxkbcommon-x11-0 libwayland-client0
  libwayland-egl1 libfontconfig1 libdbus-1-3 libgl1 libegl1 libgl1-mesa-dri
  # scripts/bench-idle.sh, which CI runs: a server, a competing download, a shaped namespace.
  nginx-light curl iproute2)
for option in "$@"; do
  case "$option" in
    --bench) packages+=(nginx-light curl wget aria2 hyperfine time) ;;
    # Not dbus-x11: with DISPLAY set, libdbus would autolaunch a stray session bus.
    --screenshots) packages+=(xvfb xauth dbus dunst imagemagick xdotool faketime) ;;
    *) echo "unknown option $option (use --bench or --screenshots)" >&2; exit 2 ;;
  esac
done
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
