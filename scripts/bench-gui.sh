#!/usr/bin/env bash
# CPU time the real window uses, under Xvfb with a session bus and a notification daemon, as on a
# desktop, with 10,000 jobs: first idle (none running) for SECONDS, then with one job transferring
# (the window repaints 4 times a second to show live progress). Then the frame time of the
# table with 10,000 jobs (benches/gui_frames.rs).
#   scripts/bench-gui.sh [SECONDS]     (default 60; installs Xvfb & co. like screenshots.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
bash scripts/setup.sh --screenshots
cargo build --locked --release --quiet
ferry="$PWD/target/release/ferry"

source scripts/desktop-env.sh

python3 scripts/seed_server.py >"$work/port" &
pids+=($!)
until [ -s "$work/port" ]; do sleep 0.1; done
base="http://127.0.0.1:$(head -1 "$work/port")"

# 10,000 jobs (room for them in the quotas), 50 of them with a file on the throttled server.
echo "(service_idle_exit_secs: 0, watch_network: false, max_jobs_per_user: 20000, max_jobs_per_machine: 20000)" \
  >"$FERRY_HOME/config.ron"
"$ferry" daemon >/dev/null 2>&1
for i in $(seq 1 50); do
  "$ferry" create "idle-$i.bin" >/dev/null
  "$ferry" add "idle-$i.bin" "$base/slow/idle-$i.bin?size=100000000" "$work/downloads/idle-$i.bin" >/dev/null 2>&1
done
python3 scripts/seed_jobs.py "$FERRY_HOME/run/ferry.sock" 9950 "$base/slow" "$work/downloads"
echo "jobs: $("$ferry" list | tail -n +2 | wc -l)"

start_xvfb 1440x860
# The window logs its frame rate every 10 s at debug level.
FERRY_LOG=ferry::gui=debug dbus-run-session -- bash -c 'dunst >/dev/null 2>&1 & exec "$0" gui' \
  "$ferry" >"$work/gui.log" 2>&1 &
pids+=($!)
xdotool search --sync --name '^Ferry$' >/dev/null
gui=$(pgrep -n -f "$ferry gui")

cpu() { # utime + stime of the GUI process, in clock ticks
  awk '{ print $14 + $15 }' "/proc/$gui/stat"
}
measure() { # LABEL
  sleep 3 # let the window settle after the change
  local before after ticks
  before=$(cpu)
  sleep "$seconds"
  after=$(cpu)
  ticks=$(getconf CLK_TCK)
  awk -v b="$before" -v a="$after" -v t="$ticks" -v s="$seconds" -v l="$1" \
    'BEGIN { printf "%-34s CPU %.2f s in %d s (%.2f %%)\n", l, (a - b) / t, s, 100 * (a - b) / t / s }'
  { grep -o 'frames: .*' "$work/gui.log" || echo 'no frame logged'; } | tail -1 | sed 's/^/  last frame rate: /'
}
measure "idle window (10,000 jobs, none running)"
"$ferry" resume idle-1.bin >/dev/null
measure "one job transferring"
"$ferry" suspend idle-1.bin >/dev/null

cargo bench --locked --quiet --bench gui_frames
