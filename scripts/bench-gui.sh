#!/usr/bin/env bash
# CPU time the real window uses, under Xvfb with a session bus and a notification daemon, as on a
# desktop: first idle (jobs present, none running) for SECONDS, then with one job transferring
# (the window repaints ~10 times a second to show live progress). Then the frame time of the
# table with 10,000 jobs (benches/gui_frames.rs).
#   scripts/bench-gui.sh [SECONDS]     (default 60; installs Xvfb & co. like screenshots.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
# cargo (rustup) finds its toolchain through HOME, which is replaced below.
export RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
seconds=${1:-60}
bash scripts/setup.sh --screenshots
cargo build --locked --release --quiet
ferry="$PWD/target/release/ferry"

work=$(mktemp -d)
pids=()
cleanup() {
  # The window first: it would start the service again.
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  pkill -f "^$ferry gui" 2>/dev/null || true
  FERRY_HOME="$work/home" "$ferry" daemon --stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

export FERRY_HOME="$work/home" HOME="$work/user" XDG_RUNTIME_DIR="$work/xdg"
mkdir -p "$FERRY_HOME" "$HOME" "$XDG_RUNTIME_DIR" "$work/downloads"
chmod 700 "$XDG_RUNTIME_DIR"
unset DBUS_SESSION_BUS_ADDRESS
echo '(service_idle_exit_secs: 0, watch_network: false)' >"$FERRY_HOME/config.ron"
echo "(default_folder: \"$work/downloads\", close_to_tray: false)" >"$FERRY_HOME/gui.ron"

python3 scripts/seed_server.py >"$work/port" &
pids+=($!)
until [ -s "$work/port" ]; do sleep 0.1; done
base="http://127.0.0.1:$(head -1 "$work/port")"

"$ferry" daemon >/dev/null 2>&1
for i in $(seq 1 50); do
  "$ferry" create "idle-$i.bin" >/dev/null
  "$ferry" add "idle-$i.bin" "$base/slow/idle-$i.bin?size=100000000" "$work/downloads/idle-$i.bin" >/dev/null 2>&1
done

display=:$((90 + RANDOM % 100))
Xvfb "$display" -screen 0 1440x860x24 -nolisten tcp >/dev/null 2>&1 &
pids+=($!)
export DISPLAY="$display"
until xdotool getmouselocation >/dev/null 2>&1; do sleep 0.1; done
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
measure "idle window (50 jobs, none running)"
"$ferry" resume idle-1.bin >/dev/null
measure "one job transferring"
"$ferry" suspend idle-1.bin >/dev/null

cargo bench --locked --quiet --bench gui_frames
