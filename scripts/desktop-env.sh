# Sourced by the scripts that run the real window headless (screenshots.sh, bench-gui.sh,
# check-tray.sh): a throwaway Ferry home, an Xvfb display, and clean-up on exit.
# The caller sets `ferry` (the binary) first.

# cargo (rustup) finds its toolchain through HOME, which desktop_home replaces.
export RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"

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

# A Ferry home and user directories of its own, a service that never exits by itself and
# ignores the network state, and no session bus inherited from the caller.
export FERRY_HOME="$work/home" HOME="$work/user" XDG_RUNTIME_DIR="$work/xdg"
export XDG_CONFIG_HOME="$work/user/.config" XDG_DATA_HOME="$work/user/.local/share"
mkdir -p "$FERRY_HOME" "$HOME" "$XDG_RUNTIME_DIR" "$work/downloads"
chmod 700 "$XDG_RUNTIME_DIR"
unset DBUS_SESSION_BUS_ADDRESS
echo '(service_idle_exit_secs: 0, watch_network: false)' >"$FERRY_HOME/config.ron"
# GUI settings: downloads into the throwaway folder; closing the window quits.
echo "(default_folder: \"$work/downloads\", close_to_tray: false)" >"$FERRY_HOME/gui.ron"

start_xvfb() { # WIDTHxHEIGHT: an X display of that size, in DISPLAY
  local display=:$((90 + RANDOM % 100))
  Xvfb "$display" -screen 0 "${1}x24" -nolisten tcp >/dev/null 2>&1 &
  pids+=($!)
  export DISPLAY="$display"
  until xdotool getmouselocation >/dev/null 2>&1; do sleep 0.1; done
}
