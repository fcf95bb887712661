# Sourced by the benchmark scripts (with $ferry and FERRY_HOME set).
# start_serve WORK [OPTION...]: `ferry serve` of WORK/served on a free loopback port, with these
# options; sets serve_pid and base (its URL), and starts the service once, outside the timings.
start_serve() {
  local work=$1; shift
  "$ferry" serve --listen 127.0.0.1:0 "$@" "$work/served" > "$work/serve.out" 2> "$work/serve.log" &
  serve_pid=$!
  for _ in $(seq 100); do grep -q "serving" "$work/serve.out" 2>/dev/null && break; sleep 0.05; done
  base=$(sed -n 's#.* on \(http://[^ ]*\)/$#\1#p' "$work/serve.out")
  "$ferry" list >/dev/null
}
