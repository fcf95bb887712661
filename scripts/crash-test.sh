#!/usr/bin/env bash
# The crash loop: downloads and uploads run through the real service while it is killed with
# SIGKILL N times at random moments mid-transfer; then every job must finish and every file must
# be byte-exact (sha256), with nothing lost. The first download runs over 16 connections.
#   scripts/crash-test.sh N          (default 20; CI runs a small N)
# Env: FERRY (default target/debug/ferry, built if missing), FILES (downloads, default 6),
#      UPLOADS (default 3), SIZE_MB (per file, default 24), RATE_MB (MiB/s per connection, 16).
# Everything stays on 127.0.0.1 (the server is `ferry serve`) and in a temp folder.
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-20}
files=${FILES:-6}
uploads=${UPLOADS:-3}
size_mb=${SIZE_MB:-24}
ferry=${FERRY:-${CARGO_TARGET_DIR:-target}/debug/ferry}
[ -x "$ferry" ] || cargo build --quiet
ferry=$(realpath "$ferry")

work=$(mktemp -d)
server_pid=""
proxy_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null || true
  FERRY_HOME="$work/home" "$ferry" daemon --stop >/dev/null 2>&1 || true
  pkill -KILL -f "$work/home" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/served" "$work/home" "$work/out" "$work/local"
export FERRY_HOME="$work/home"
# Short retry delays: a job cut by a kill resumes from its checkpoint on the next start anyway.
cat >"$FERRY_HOME/config.ron" <<'EOF'
(minimum_retry_delay_secs: 5, watch_network: false, max_jobs_per_user: 100, service_idle_exit_secs: 0)
EOF

for i in $(seq 1 "$files"); do
  head -c $((size_mb << 20)) /dev/urandom >"$work/served/d$i.bin"
done
for i in $(seq 1 "$uploads"); do
  head -c $((size_mb << 20)) /dev/urandom >"$work/local/u$i.bin"
done

# The server: ferry serve on a free loopback port, read from its ready line.
coproc SERVER { exec "$ferry" serve --listen 127.0.0.1:0 "$work/served" 2>"$work/serve.log"; }
server_pid=$SERVER_PID
read -r ready <&"${SERVER[0]}"
base=${ready##* }
base=${base%/}
# Through a throttling proxy (RATE_MB MiB/s per connection), so that the kills land mid-transfer.
python3 scripts/throttle_proxy.py "${base##*:}" $((${RATE_MB:-16} << 20)) >"$work/proxy.port" &
proxy_pid=$!
until [ -s "$work/proxy.port" ]; do sleep 0.05; done
read -r proxy_port <"$work/proxy.port"
base="http://127.0.0.1:$proxy_port"
echo "server: $ready, through $base"

ids=()
for i in $(seq 1 "$files"); do
  id=$("$ferry" create "download $i")
  "$ferry" add "$id" "$base/d$i.bin" "$work/out/d$i.bin" >/dev/null 2>&1
  # The first download over 16 connections: its segment map is killed mid-flight too.
  [ "$i" -eq 1 ] && "$ferry" set "$id" --connections 16 >/dev/null
  ids+=("$id")
done
for i in $(seq 1 "$uploads"); do
  id=$("$ferry" create --upload "upload $i")
  "$ferry" add "$id" "$base/u$i.bin" "$work/local/u$i.bin" >/dev/null 2>&1
  ids+=("$id")
done
for id in "${ids[@]}"; do "$ferry" resume "$id" >/dev/null; done

service_pid() { "$ferry" daemon --status 2>/dev/null | awk '/^pid:/ { print $2 }'; }
killed=0
mid_transfer=0
while [ "$killed" -lt "$kills" ]; do
  # Let a transfer get going (the commands start the service again when it is gone).
  "$ferry" list >/dev/null
  sleep "0.$((RANDOM % 6))$((RANDOM % 10))"
  if "$ferry" list | grep -q TRANSFERRING; then mid_transfer=$((mid_transfer + 1)); fi
  pid=$(service_pid)
  [ -n "$pid" ] || continue
  kill -KILL "$pid" 2>/dev/null || continue
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  killed=$((killed + 1))
done
echo "killed the service $killed times ($mid_transfer of them while a job was TRANSFERRING)"

failed=0
for id in "${ids[@]}"; do
  if ! "$ferry" wait --timeout 300 "$id" >/dev/null; then
    echo "job $id did not finish:" >&2
    "$ferry" info "$id" >&2 || true
    failed=1
  fi
done
for id in "${ids[@]}"; do "$ferry" complete "$id" >/dev/null || failed=1; done

for i in $(seq 1 "$files"); do
  if ! cmp -s "$work/served/d$i.bin" "$work/out/d$i.bin"; then
    echo "download d$i.bin differs or is missing" >&2
    failed=1
  fi
done
for i in $(seq 1 "$uploads"); do
  if ! cmp -s "$work/local/u$i.bin" "$work/served/u$i.bin"; then
    echo "upload u$i.bin differs or is missing" >&2
    failed=1
  fi
done
leftovers=$(find "$work/out" -name '.*' | wc -l)
if [ "$leftovers" -ne 0 ]; then
  echo "$leftovers temp files left behind in the download folder" >&2
  failed=1
fi
total=$((files + uploads))
if [ "$failed" -ne 0 ]; then
  echo "crash test: FAILED after $killed kills" >&2
  exit 1
fi
echo "crash test: $killed kills, $total jobs ($files downloads, $uploads uploads of $size_mb MiB), all byte-exact"
