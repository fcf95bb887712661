#!/usr/bin/env bash
# Speed-limit accuracy on loopback, against `ferry serve`:
#  1. a 16 MiB download at `--limit-rate 2M` (target: 8 s ± 5 %), on one connection and on 8;
#  2. the same for an upload (`ferry put --limit-rate 2M`);
#  3. a limit changed mid-transfer (`ferry set JOB --limit-rate`, 1M → 4M, then `ferry limit`
#     for the global one): how long until the transfer runs at the new rate (target: ≤ 1 s).
#   scripts/bench-limit.sh
# Env: RUNS (runs per timing, default 3), WORK (default /dev/shm/ferry-limitbench).
# Needs: python3 and a release build (made here).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}; work=${WORK:-/dev/shm/ferry-limitbench}
command -v python3 >/dev/null || { echo "missing python3" >&2; exit 2; }
cargo build --release --quiet
ferry=$PWD/target/release/ferry
rm -rf "$work" && mkdir -p "$work"/{served,out,home}
head -c $((16 << 20)) /dev/urandom > "$work/served/16m.bin"
head -c $((48 << 20)) /dev/urandom > "$work/served/48m.bin"
cp "$work/served/16m.bin" "$work/up.bin"
export FERRY_HOME=$work/home
source scripts/serve-for-bench.sh
start_serve "$work" --allow-overwrite
cleanup() {
  kill "$serve_pid" 2>/dev/null || true
  "$ferry" daemon --stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
"$ferry" limit --download none --upload none >/dev/null

# Seconds one command takes, RUNS times (its result, the file given first, removed before each);
# prints each and the mean's distance from 8 s.
timed() {
  local label=$1 result=$2; shift 2
  python3 - "$runs" "$label" "$result" "$@" <<'PY'
import os, subprocess, sys, time
runs, label, result, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
took = []
for _ in range(runs):
    if os.path.exists(result):
        os.remove(result)
    start = time.monotonic()
    subprocess.run(cmd, check=True)
    took.append(time.monotonic() - start)
mean = sum(took) / len(took)
print(f"{label}: " + ", ".join(f"{t:.2f}" for t in took) + f" s; mean {mean:.2f} s, {100 * (mean - 8) / 8:+.1f} % from 8 s")
PY
}
echo "== 16 MiB at --limit-rate 2M (8 s expected)"
cd "$work/out"
timed "download, 1 connection " "$work/out/16m.bin" "$ferry" get --quiet -x 1 --limit-rate 2M "$base/16m.bin"
timed "download, 8 connections" "$work/out/16m.bin" "$ferry" get --quiet -x 8 --limit-rate 2M "$base/16m.bin"
timed "upload                 " "$work/served/up.bin" "$ferry" put --quiet --limit-rate 2M "$work/up.bin" "$base/up.bin"
cmp "$work/served/16m.bin" "$work/out/16m.bin" && cmp "$work/up.bin" "$work/served/up.bin" \
  && echo "both copies byte-exact"

echo "== a limit changed mid-transfer (48 MiB download, 1 connection)"
python3 - "$ferry" "$base/48m.bin" <<'PY'
import json, subprocess, sys, time
ferry, url = sys.argv[1], sys.argv[2]
def info():
    out = subprocess.run([ferry, "info", "--json", "48m.bin"], capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else None
def samples_until(deadline):
    got = []
    while time.monotonic() < deadline:
        job = info()
        if job:
            got.append((time.monotonic(), job["bytes_transferred"]))
        time.sleep(0.05)
    return got
def reach(samples, since, rate, window=0.3):
    """When the rate over `window` first reaches 90 % of `rate`, in seconds after `since`."""
    for i, (t, b) in enumerate(samples):
        if t < since:
            continue
        for t0, b0 in samples[:i]:
            if t - t0 <= window and t - t0 >= window / 2:
                if (b - b0) / (t - t0) >= 0.9 * rate:
                    return t - since
                break
    return None
subprocess.run(["rm", "-f", "48m.bin"])
get = subprocess.Popen([ferry, "get", "--quiet", "-x", "1", "--limit-rate", "1M", url])
start = time.monotonic()
samples = samples_until(start + 3)
changed = time.monotonic()
subprocess.run([ferry, "set", "48m.bin", "--limit-rate", "4M"], check=True)
samples += samples_until(changed + 3)
lowered = time.monotonic()
subprocess.run([ferry, "limit", "--download", "512K"], check=True, capture_output=True)
samples += samples_until(lowered + 3)
subprocess.run([ferry, "limit", "--download", "none"], check=True, capture_output=True)
subprocess.run([ferry, "set", "48m.bin", "--limit-rate", "none"], check=True)
get.wait()
MIB = 1 << 20
before = [s for s in samples if start + 1 <= s[0] <= changed]
rate_before = (before[-1][1] - before[0][1]) / (before[-1][0] - before[0][0])
up = reach(samples, changed, 4 * MIB)
after = [s for s in samples if changed + 1.5 <= s[0] <= lowered]
rate_after = (after[-1][1] - after[0][1]) / (after[-1][0] - after[0][0])
# Lowered: when the rate over 0.3 s first falls to 110 % of 512 KiB/s.
down = None
for i, (t, b) in enumerate(samples):
    if t < lowered:
        continue
    older = [s for s in samples[:i] if 0.15 <= t - s[0] <= 0.3]
    if older and (b - older[0][1]) / (t - older[0][0]) <= 1.1 * 512 * 1024:
        down = t - lowered
        break
low = [s for s in samples if lowered + 1.5 <= s[0]]
rate_low = (low[-1][1] - low[0][1]) / (low[-1][0] - low[0][0])
fmt = lambda r: f"{r / MIB:.2f} MiB/s"
print(f"job limit 1M: {fmt(rate_before)}; set to 4M: {fmt(rate_after)}, reached in "
      + (f"{up:.2f} s" if up is not None else "never"))
print(f"global limit 512K below it: {fmt(rate_low)}, reached in "
      + (f"{down:.2f} s" if down is not None else "never"))
print("the download finished with exit", get.returncode)
PY
