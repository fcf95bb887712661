#!/usr/bin/env bash
# A tray host that starts after Ferry: the window runs first with no StatusNotifierWatcher on
# the session bus, then a real one (status-notifier-watcher) and a tray that draws icons
# (gtk-sni-tray-standalone) start. Checks that Ferry's icon registers with the late host and
# that a left click on it (the host's Activate) hides and shows the window.
#   scripts/check-tray-late.sh    (needs Debian's haskell-status-notifier-item-utils and
#                                  haskell-gtk-sni-tray-utils, installed here with apt)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --screenshots
command -v status-notifier-watcher >/dev/null || apt-get install -y --no-install-recommends \
  haskell-status-notifier-item-utils haskell-gtk-sni-tray-utils
cargo build --locked --quiet
source scripts/desktop-env.sh
mkdir -p "$work/bin"
cp target/debug/ferry "$work/bin/ferry"
ferry="$work/bin/ferry"
"$ferry" daemon >/dev/null
start_xvfb 1024x768
export WORK="$work" FERRY="$ferry"
dbus-run-session -- bash -euo pipefail -c '
  fail() { echo "FAIL: $*" >&2; exit 1; }
  until_true() { for _ in $(seq $(( ${3:-20} * 10 ))); do if eval "$1"; then return 0; fi; sleep 0.1; done; fail "$2"; }
  items() {
    busctl --user get-property org.kde.StatusNotifierWatcher /StatusNotifierWatcher \
      org.kde.StatusNotifierWatcher RegisteredStatusNotifierItems 2>/dev/null || true
  }
  visible() { xdotool search --onlyvisible --name "^Ferry$" 2>/dev/null | wc -l; }
  "$FERRY" gui >"$WORK/gui.log" 2>&1 &
  until_true "[ \$(visible) = 1 ]" "no window" 60
  sleep 4 # the window has looked for a host and found none
  echo "ok: the window runs with no tray host"
  status-notifier-watcher >"$WORK/watcher.log" 2>&1 &
  gtk-sni-tray-standalone >"$WORK/tray.log" 2>&1 &
  until_true "items | grep -q StatusNotifierItem-" "the icon never registered with the late host" 30
  echo "ok: registered with the late host: $(items)"
  item=$(items | grep -o "org.kde.StatusNotifierItem-[0-9]*-[0-9]*" | head -1)
  busctl --user call "$item" /StatusNotifierItem org.kde.StatusNotifierItem Activate ii 0 0
  until_true "[ \$(visible) = 0 ]" "a left click did not hide the window"
  busctl --user call "$item" /StatusNotifierItem org.kde.StatusNotifierItem Activate ii 0 0
  until_true "[ \$(visible) = 1 ]" "a second left click did not show the window"
  echo "ok: a left click on the icon hides and shows the window"
  echo PASS
'
