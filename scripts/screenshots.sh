#!/usr/bin/env bash
# Captures screenshots/*.png of the real program under Xvfb, with a seeded set of jobs: two
# transferring (from a throttled loopback server), one in ERROR (404), one TRANSFERRED, one
# suspended job 86 days idle (inside the 7-day near-timeout window of the 90-day timeout, made
# with faketime), and the near-timeout toast it raises.
#   scripts/screenshots.sh            (installs Xvfb & co. with scripts/setup.sh --screenshots)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --screenshots
cargo build --locked --quiet
ferry="$PWD/target/debug/ferry"
shots="$PWD/screenshots"
mkdir -p "$shots"

source scripts/desktop-env.sh

python3 scripts/seed_server.py >"$work/port" &
pids+=($!)
until [ -s "$work/port" ]; do sleep 0.1; done
base="http://127.0.0.1:$(head -1 "$work/port")"
dl="$work/downloads"

# The idle job: created by a service whose clock runs 86 days behind (the job's times come from
# the service's clock).
faketime -f "-86d" "$ferry" daemon --foreground 2>"$work/fake-service.log" &
fake=$!
until "$ferry" daemon --status >/dev/null 2>&1; do sleep 0.1; done
"$ferry" create "quarterly-backup.img" >/dev/null
"$ferry" add quarterly-backup.img "$base/slow/quarterly-backup.img?size=8000000000" "$dl/quarterly-backup.img" >/dev/null
"$ferry" daemon --stop >/dev/null
wait "$fake" || true
# A bandwidth schedule for the Settings page. It limits LOW jobs only, and none is seeded: the
# other captures look the same whatever the day and hour the script runs.
cat >"$FERRY_HOME/config.ron" <<'RON'
(service_idle_exit_secs: 0, watch_network: false,
 bandwidth_policy: (
   windows: [
     (days: [Mon, Tue, Wed, Thu, Fri], start: "09:00", end: "17:00", low: "0"),
     (days: [Sat, Sun], start: "22:00", end: "06:00", low: "10M"),
   ],
   outside: (low: "2M"),
 ))
RON
"$ferry" daemon >/dev/null

job() { # NAME URL [PRIORITY]
  "$ferry" create --priority "${3:-normal}" "$1" >/dev/null
  "$ferry" add "$1" "$2" "$dl/$1" >/dev/null
}
job "debian-13.2-amd64-DVD-1.iso" "$base/slow/debian.iso?size=3900000000&rate=6000000" foreground
job "dataset-2026-11.tar.zst" "$base/slow/dataset?size=1200000000&rate=1500000" high
job "fonts-collection.tar.gz" "$base/fast/fonts"
job "nightly-build.zip" "$base/missing/nightly-build.zip"
job "podcast-episode-212.mp3" "$base/slow/podcast?size=90000000"
# Its server sends 1.5 MB/s; its own limit holds it at 1 MiB/s (the window says so).
"$ferry" set dataset-2026-11.tar.zst --limit-rate 1M
# These two first: FOREGROUND and HIGH jobs would hold the NORMAL ones back.
"$ferry" resume fonts-collection.tar.gz >/dev/null
"$ferry" resume nightly-build.zip >/dev/null
"$ferry" wait fonts-collection.tar.gz >/dev/null
"$ferry" wait nightly-build.zip >/dev/null || true # ERROR: exit 3
"$ferry" resume debian-13.2-amd64-DVD-1.iso >/dev/null
"$ferry" resume dataset-2026-11.tar.zst >/dev/null

start_xvfb 1440x860

# A session bus with a notification daemon, as on a desktop.
dbus-run-session -- bash -c '
  dunst >/dev/null 2>&1 &
  exec "$0" gui
' "$ferry" >"$work/gui.log" 2>&1 &
pids+=($!)
window=$(xdotool search --sync --name '^Ferry$' | head -1)
xdotool windowsize "$window" 1440 860 windowmove "$window" 0 0
sleep 4 # let transfers run so that rates and the speed graph have points

shot() { import -window root "$shots/$1.png"; echo "wrote screenshots/$1.png"; }
# Select the first transferring job (rows sort by name: the DVD is second) to show its details.
xdotool mousemove 150 58 click 1 key Down
sleep 3
shot main
xdotool mousemove 82 12 click 1 # Stale
sleep 1
shot stale
xdotool mousemove 30 12 click 1 # Jobs
sleep 1
# Without a window manager nothing gives the window the keyboard focus; winit reads keys only
# with it.
xdotool windowfocus --sync "$window"
xdotool key ctrl+n # New download
sleep 1
shot new-download
xdotool key Escape # closes New download
sleep 1
# The FOREGROUND DVD, split over 8 connections: its details end with a bar per piece. The
# Properties are folded so that the files are on screen.
xdotool mousemove 150 94 click 1
sleep 1
xdotool mousemove 1140 158 click 1
sleep 3
shot split-file
# The Settings page, with the bandwidth schedule, in a small window.
xdotool windowsize "$window" 800 500
sleep 1
xdotool mousemove 196 12 click 1 # Settings
sleep 2
# Down to the schedule, at the page's end (the wheel over the page).
xdotool mousemove 300 300 click --repeat 30 --delay 30 5 mousemove 120 470
sleep 1
import -window root -crop 800x500+0+0 "$shots/settings-800x500.png"
echo "wrote screenshots/settings-800x500.png"
