#!/usr/bin/env bash
# Upload benchmark on loopback: `ferry put` (BITS upload protocol, to `ferry serve`) next to
# `curl -T` (one HTTP PUT, to nginx's WebDAV module), the same 1 GiB file, in one run (hyperfine).
# For a ratio that the machine's noise does not swamp, pair the runs: farm-bench (see README).
#   scripts/bench-upload.sh [SIZE_MIB]     (default 1024)
# Env: RUNS (hyperfine runs, default 5), WORK (default /dev/shm/ferry-upbench: source and
#      destinations in memory, so the disk is not what is measured).
# Needs: nginx-light, curl, hyperfine (scripts/setup.sh --bench installs them) and a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1024}; runs=${RUNS:-5}; work=${WORK:-/dev/shm/ferry-upbench}
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
for t in curl hyperfine; do command -v $t >/dev/null || { echo "missing $t: scripts/setup.sh --bench" >&2; exit 2; }; done
[ -x "$nginx_bin" ] || { echo "missing nginx: scripts/setup.sh --bench" >&2; exit 2; }
cargo build --release --quiet
ferry=$PWD/target/release/ferry
rm -rf "$work" && mkdir -p "$work"/{served,dav,nginx/tmp,home}
head -c $((size << 20)) /dev/urandom > "$work/source.bin"

# nginx: PUT into $work/dav, as plain as it gets (no fsync), body temp files on the same fs. Two
# servers: nginx as installed (16 KiB body buffer: it writes the body in 16 KiB pieces) and one
# with a 1 MiB body buffer, the faster of the two and the yardstick Ferry is held to.
port_dav=18181; port_dav_1m=18183
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1;
user root root;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $work/nginx/tmp;
  server {
    listen 127.0.0.1:$port_dav;
    location /put/ { alias $work/dav/; dav_methods PUT; client_max_body_size 0; }
  }
  server {
    listen 127.0.0.1:$port_dav_1m;
    client_body_buffer_size 1m;
    location /put/ { alias $work/dav/; dav_methods PUT; client_max_body_size 0; }
  }
}
CONF
"$nginx_bin" -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log"
export FERRY_HOME=$work/home
source scripts/serve-for-bench.sh
start_serve "$work"
cleanup() {
  kill "$serve_pid" 2>/dev/null || true
  kill "$(cat "$work/nginx/nginx.pid" 2>/dev/null)" 2>/dev/null || true
  "$ferry" daemon --stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== upload of ${size} MiB over loopback"
hyperfine -N --runs "$runs" --warmup 1 \
  --prepare "rm -f $work/served/up.bin $work/dav/up.bin" \
  -n "ferry put" "$ferry put --quiet $work/source.bin $base/up.bin" \
  -n "curl -T (nginx, 1 MiB body buffer)" "curl -sS -f -T $work/source.bin http://127.0.0.1:$port_dav_1m/put/up.bin" \
  -n "curl -T (nginx as installed)" "curl -sS -f -T $work/source.bin http://127.0.0.1:$port_dav/put/up.bin" \
  --export-json "$work/../ferry-upbench.json" 2>&1 | grep -Ev '^\s*$'
# One more upload outside the timings, to check what arrived.
rm -f "$work/served/up.bin"
"$ferry" put --quiet "$work/source.bin" "$base/up.bin"
cmp "$work/source.bin" "$work/served/up.bin" && echo "ferry serve holds an exact copy of the upload"
