#!/usr/bin/env bash
# The window at real-world scale, end to end: 200 jobs, 150 of them inside the near-timeout
# window at once (136 a few minutes from their inactivity timeout, 14 four days from it, made
# with faketime), under Xvfb with a session bus, dunst and dbus-monitor. Checks and prints:
#   - desktop notifications (Notify calls) over the whole run: at most 5, withdrawn ones counted;
#   - a second `ferry gui` leaves one window (and says so), a restarted window re-sends nothing;
#   - the 136 cancellations by the inactivity timeout make one notification;
# and captures screenshots/scale-{1440x900,1024x600,800x500}.png of the real window.
#   scripts/check-scale.sh            (installs Xvfb & co. with scripts/setup.sh --screenshots)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --screenshots
cargo build --locked --quiet
shots="$PWD/screenshots"
mkdir -p "$shots"

source scripts/desktop-env.sh
# A copy: a build during the run (minutes) must not swap the binary under it.
mkdir -p "$work/bin"
cp target/debug/ferry "$work/bin/ferry"
ferry="$work/bin/ferry"
# Room for 200 jobs (the default quota is 60 per user).
echo '(service_idle_exit_secs: 0, watch_network: false, max_jobs_per_user: 300)' >"$FERRY_HOME/config.ron"

python3 scripts/seed_server.py >"$work/port" &
pids+=($!)
until [ -s "$work/port" ]; do sleep 0.1; done
base="http://127.0.0.1:$(head -1 "$work/port")"
dl="$work/downloads"

job() { # NAME URL
  local id
  id=$("$ferry" create "$1")
  "$ferry" add "$id" "$2" "$dl/$1" >/dev/null 2>&1
  echo "$id"
}
# Jobs made by a service whose clock runs behind: their last activity is that far back.
seed_idle() { # OFFSET PREFIX COUNT
  faketime -f "$1" "$ferry" daemon --foreground 2>>"$work/fake-service.log" &
  local fake=$!
  until "$ferry" daemon --status >/dev/null 2>&1; do sleep 0.1; done
  for i in $(seq 1 "$3"); do job "$2-$i.img" "$base/slow/$2-$i?size=4000000000" >/dev/null; done
  "$ferry" daemon --stop >/dev/null
  wait "$fake" || true
}
# The 50 others first (a real clock): transferring, TRANSFERRED, ERROR and fresh ones.
"$ferry" daemon >/dev/null
for i in $(seq 1 40); do job "fresh-$i.iso" "$base/slow/fresh-$i?size=700000000" >/dev/null; done
for i in $(seq 1 4); do
  job "done-$i.zip" "$base/fast/done-$i" >/dev/null
  "$ferry" resume "done-$i.zip" >/dev/null
done
job "nightly-build.zip" "$base/missing/nightly-build.zip" >/dev/null
"$ferry" resume nightly-build.zip >/dev/null
for i in $(seq 1 5); do
  job "video-$i.mkv" "$base/slow/video-$i?size=3000000000&rate=300000" >/dev/null
  "$ferry" resume "video-$i.mkv" >/dev/null
done
"$ferry" daemon --stop >/dev/null
# 86 days: four days left, kept by the user during the run.
seed_idle "-123840m" "archive" 14
# 90 days minus 5 minutes (faketime takes one unit): cancelled by the inactivity timeout a few
# minutes into the run.
seed_idle "-129595m" "old-backup" 136
"$ferry" daemon >/dev/null
echo "seeded: $("$ferry" list | tail -n +2 | wc -l) jobs"

start_xvfb 1440x900
export WORK="$work" FERRY="$ferry" SHOTS="$shots"
dbus-run-session -- bash -euo pipefail -c '
  fail() { echo "FAIL: $*" >&2; exit 1; }
  # Notifications stay until withdrawn (as in a notification centre), so a withdrawal shows.
  printf "[urgency_low]\ntimeout = 0\n[urgency_normal]\ntimeout = 0\n[urgency_critical]\ntimeout = 0\n" \
    >"$WORK/dunstrc"
  dunst -config "$WORK/dunstrc" >/dev/null 2>&1 &
  dbus-monitor --session "type=method_call,interface=org.freedesktop.Notifications" \
    >"$WORK/notifications.log" 2>/dev/null &
  notifies() { grep -c "member=Notify" "$WORK/notifications.log" || true; }
  closes() { grep -c "member=CloseNotification" "$WORK/notifications.log" || true; }
  windows() { xdotool search --onlyvisible --name "^Ferry$" 2>/dev/null | wc -l; }
  until_true() { # CONDITION WHAT SECONDS
    for _ in $(seq $(( ${3:-20} * 10 ))); do if eval "$1"; then return 0; fi; sleep 0.1; done
    fail "$2"
  }
  "$FERRY" gui >"$WORK/gui.log" 2>&1 &
  gui=$!
  window=$(xdotool search --sync --onlyvisible --name "^Ferry$" | head -1)
  xdotool windowsize "$window" 1440 900 windowmove "$window" 0 0
  until_true "[ \$(notifies) -ge 1 ]" "no notification for the 150 warnings" 30
  sleep 3 # gathered: anything else that was due went out too
  echo "ok: 150 jobs in the warning window at start: $(notifies) notification(s)"
  import -window root "$SHOTS/scale-1440x900.png"

  # A second launch: the open window comes forward, no second window.
  out=$("$FERRY" gui 2>&1)
  echo "$out" | grep -q "open already" || fail "the second launch said: $out"
  [ "$(windows)" = 1 ] || fail "$(windows) windows after a second launch"
  echo "ok: a second ferry gui: \"$out\", $(windows) window"

  # The window restarted: the warnings it sent are not sent again.
  before=$(notifies)
  kill "$gui"; wait "$gui" 2>/dev/null || true
  until_true "[ \$(windows) = 0 ]" "the window did not close"
  "$FERRY" gui >>"$WORK/gui.log" 2>&1 &
  gui=$!
  window=$(xdotool search --sync --onlyvisible --name "^Ferry$" | head -1)
  xdotool windowsize "$window" 1024 600 windowmove "$window" 0 0
  sleep 5
  [ "$(notifies)" = "$before" ] || fail "the restarted window sent $(( $(notifies) - before )) again"
  echo "ok: restarted window: no notification re-sent"
  import -window root -crop 1024x600+0+0 "$SHOTS/scale-1024x600.png"

  # The inactivity timeout cancels the 136 old backups (over a minute or two: they were made
  # one after the other): grouped, a notification or two for all of them.
  until_true "! \"\$FERRY\" list | grep -q old-backup" "the 136 were not cancelled" 400
  sleep 4
  echo "ok: 136 cancelled by the inactivity timeout; $(notifies) Notify calls so far"

  # The user keeps the 14 archives (a property change is activity): the warning is withdrawn,
  # also though an earlier window sent it.
  for i in $(seq 1 14); do "$FERRY" set "archive-$i.img" --description kept >/dev/null; done
  until_true "[ \$(closes) -ge 1 ]" "the warning was not withdrawn" 20
  echo "ok: kept: the warning withdrawn ($(closes) CloseNotification)"
  xdotool windowsize "$window" 800 500
  sleep 2
  import -window root -crop 800x500+0+0 "$SHOTS/scale-800x500.png"
  [ "$(notifies)" -le 5 ] || fail "$(notifies) desktop notifications (at most 5)"
  echo "ok: $(notifies) desktop notifications in all for 150 warnings and 136 cancellations"
  kill "$gui" 2>/dev/null || true
  echo "PASS"
'
