#!/usr/bin/env bash
# Peak memory of the service over a multi-connection download (issue 13: target 30 MiB): a 1 GiB
# file from a loopback nginx that limits each connection to 4 MiB/s, `ferry get --connections
# 16` (all 16 connections open for the whole download), the service under `/usr/bin/time -v`.
#   scripts/bench-rss.sh [RUNS]      (default 3; FERRY=path/to/ferry to measure another binary)
# Needs: nginx-light, curl, time (scripts/setup.sh --bench installs them) and a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
for tool in nginx curl /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench-rss: $tool is missing (scripts/setup.sh --bench)" >&2; exit 2; }
done
ferry=$(realpath -m "${FERRY:-${CARGO_TARGET_DIR:-target}/release/ferry}")
[ -x "$ferry" ] || { echo "bench-rss: no $ferry: cargo build --release first" >&2; exit 2; }
work=$(mktemp -d /tmp/ferry-rss.XXXXXX)
chmod 755 "$work" # nginx's workers read the fixture
cleanup() {
  [ -f "$work/nginx/nginx.pid" ] && kill "$(cat "$work/nginx/nginx.pid")" 2>/dev/null || true
  FERRY_HOME="$work/home" "$ferry" daemon --stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/www" "$work/nginx/tmp"
truncate -s 1G "$work/www/big.bin" # sparse: what is served is zeros
port=$((20000 + $$ % 10000))
source scripts/nginx-conf.sh
nginx_conf "$work" "$port" "location /slow/ { alias $work/www/; limit_rate 4m; }" > "$work/nginx/nginx.conf"
"$(command -v nginx)" -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log"
url="http://127.0.0.1:$port/slow/big.bin"
for _ in $(seq 50); do curl -fsS -o /dev/null -r 0-0 "$url" 2>/dev/null && break; sleep 0.1; done
for run in $(seq "$runs"); do
  export FERRY_HOME="$work/home"
  rm -rf "$FERRY_HOME" "$work/out"
  mkdir -p "$FERRY_HOME" "$work/out"
  /usr/bin/time -v "$ferry" daemon --foreground >/dev/null 2>"$work/time.txt" &
  service=$!
  for _ in $(seq 100); do "$ferry" list >/dev/null 2>&1 && break; sleep 0.1; done
  "$ferry" get --quiet --connections 16 -o "$work/out" "$url"
  "$ferry" daemon --stop >/dev/null
  wait "$service"
  kib=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$work/time.txt")
  awk -v run="$run" -v kib="$kib" 'BEGIN { printf "run %d: peak RSS of the service %.1f MiB\n", run, kib / 1024 }'
done
