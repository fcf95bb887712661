#!/usr/bin/env bash
# End-to-end check of the tray under Xvfb and a private session bus: drives the real window's
# StatusNotifierItem menu the way a tray host does (com.canonical.dbusmenu.Event) and checks
# the effect: Resume all / Suspend all reach the service, Hide/Show toggle the window and the
# menu's label, Quit ends the window while the service goes on. Exits non-zero on a failure.
#   scripts/check-tray.sh          (installs Xvfb & co. with scripts/setup.sh --screenshots)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --screenshots
cargo build --locked --quiet
ferry="$PWD/target/debug/ferry"

source scripts/desktop-env.sh
export WORK="$work" FERRY="$ferry"

"$ferry" daemon >/dev/null 2>&1
"$ferry" create tray-check >/dev/null 2>&1
# Port 9 (discard) refuses connections: the job goes to TRANSIENT_ERROR when resumed.
"$ferry" add tray-check http://127.0.0.1:9/x.bin "$work/x.bin" >/dev/null 2>&1

start_xvfb 1024x768

dbus-run-session -- bash -euo pipefail -c '
  "$FERRY" gui >"$WORK/gui.log" 2>&1 &
  gui=$!
  fail() { echo "FAIL: $*" >&2; exit 1; }
  item=""
  for _ in $(seq 100); do
    item=$(dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
      org.freedesktop.DBus.ListNames | grep -o "org.kde.StatusNotifierItem[^\"]*" || true)
    [ -n "$item" ] && break
    sleep 0.1
  done
  [ -n "$item" ] || fail "no StatusNotifierItem on the bus"
  layout() {
    dbus-send --session --print-reply --dest="$item" /MenuBar com.canonical.dbusmenu.GetLayout \
      int32:0 int32:-1 array:string:label
  }
  id_of() { # the dbusmenu id of the item whose label contains $1
    layout | python3 -c "
import re, sys
text = sys.stdin.read()
ids = [(m.start(), m.group(1)) for m in re.finditer(r\"struct \{\s*int32 (\d+)\", text)]
at = text.find(sys.argv[1])
print([i for p, i in ids if p < at][-1] if at >= 0 else -1)" "$1"
  }
  # --print-reply: a call without it is flagged no-reply, and the item ignores it.
  click() {
    dbus-send --session --print-reply --dest="$item" /MenuBar com.canonical.dbusmenu.Event \
      int32:"$(id_of "$1")" string:clicked variant:int32:0 uint32:0 >/dev/null
  }
  until_true() { # up to 10 s
    for _ in $(seq 100); do if eval "$1"; then return 0; fi; sleep 0.1; done
    fail "$2"
  }
  state() { "$FERRY" list | awk "/tray-check/ { print \$4 }"; }
  visible() { xdotool search --onlyvisible --name "^Ferry$" | wc -l; }

  tooltip() {
    dbus-send --session --print-reply --dest="$item" /StatusNotifierItem \
      org.freedesktop.DBus.Properties.Get string:org.kde.StatusNotifierItem string:ToolTip
  }
  until_true "tooltip | grep -q \"No active transfer\"" "the tooltip does not sum the jobs"
  until_true "layout | grep -q \"tray-check — SUSPENDED\"" "the menu does not list the job"
  echo "ok: tooltip and the latest jobs in the menu"
  click "Resume all"
  until_true "[ \"\$(state)\" != SUSPENDED ]" "Resume all did not resume the job"
  echo "ok: Resume all -> $(state)"
  click "Suspend all"
  until_true "[ \"\$(state)\" = SUSPENDED ]" "Suspend all did not suspend the job"
  echo "ok: Suspend all -> SUSPENDED"
  until_true "[ \"\$(visible)\" = 1 ]" "the window is not shown"
  click "Hide window"
  until_true "[ \"\$(visible)\" = 0 ]" "Hide window did not hide it"
  until_true "layout | grep -q \"Show window\"" "the menu does not offer Show window"
  echo "ok: Hide window"
  click "Show window"
  until_true "[ \"\$(visible)\" = 1 ]" "Show window did not show it"
  echo "ok: Show window"
  click "Quit"
  until_true "! kill -0 $gui 2>/dev/null" "Quit did not end the window"
  "$FERRY" daemon --status >/dev/null || fail "the service stopped with the window"
  echo "ok: Quit ends the window; the service goes on"
  grep -q "no tray host" "$WORK/gui.log" || fail "no log line about the missing tray host"
  [ "$(grep -c "no tray host" "$WORK/gui.log")" = 1 ] || fail "the missing host was logged twice"
  echo "ok: the missing tray host is logged once"
'
echo "tray check passed"
