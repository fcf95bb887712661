#!/usr/bin/env bash
# Background jobs use only idle bandwidth (issue 14): in a network namespace of its own, whose
# loopback is shaped to 40 Mbit/s with tc, a server (nginx) and Ferry's service run; a job
# downloads alone, then a curl download starts beside it for 12 s, then curl ends.
#   NORMAL job:     alone >= 80 % of the link; curl >= 80 % from 3 s after it starts;
#                   the job >= 80 % again from 5 s after curl ends.
#   FOREGROUND job: shares with curl (each 25-75 % while both run).
# "The link" is what curl gets alone on it, measured first. Needs root (ip netns, tc): without
# it the script says so and exits 0. Exits 1 when a target is missed.
#   scripts/bench-idle.sh            (FERRY=path/to/ferry to test another binary)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "bench-idle: skipped, it needs root for a network namespace (ip netns, tc)"
  exit 0
fi
for tool in ip tc nginx curl python3; do
  command -v "$tool" >/dev/null || { echo "bench-idle: $tool is missing (scripts/setup.sh installs it)" >&2; exit 2; }
done
ferry=$(realpath -m "${FERRY:-${CARGO_TARGET_DIR:-target}/release/ferry}")
[ -x "$ferry" ] || { echo "bench-idle: no $ferry: cargo build --release first" >&2; exit 2; }
ns="ferry-idle-$$"
work=$(mktemp -d /tmp/ferry-idle.XXXXXX)
chmod 755 "$work" # nginx's workers read the fixture
export FERRY_HOME="$work/home"
in_ns() { ip netns exec "$ns" "$@"; }
cleanup() {
  in_ns "$ferry" daemon --stop >/dev/null 2>&1 || true
  [ -f "$work/nginx/nginx.pid" ] && kill "$(cat "$work/nginx/nginx.pid")" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  [ -n "${KEEP_LOG:-}" ] && cp "$work/daemon.log" "$KEEP_LOG"
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
# A real link's packet size: tbf drops packets larger than its burst, and loopback's are 64 KiB.
in_ns ip link set lo mtu 1500 up
# The congestion control: the machine's, or CC=cubic / CC=bbr where the kernel allows it.
if [ -n "${CC:-}" ]; then in_ns sysctl -qw net.ipv4.tcp_congestion_control="$CC"; fi
echo "congestion control: $(in_ns sysctl -n net.ipv4.tcp_congestion_control)"
in_ns tc qdisc add dev lo root tbf rate 40mbit burst 32kb latency 50ms
mkdir -p "$work/www" "$work/nginx/tmp" "$work/out" "$FERRY_HOME"
# Sparse files: what is served is zeros, the timing is what counts.
truncate -s 4G "$work/www/job.bin"
truncate -s 4G "$work/www/curl.bin"
# The server: nginx of its own (the script needs nothing outside the repository), full speed.
source scripts/nginx-conf.sh
nginx_conf "$work" 18080 "location /files/ { alias $work/www/; }" > "$work/nginx/nginx.conf"
# The namespace has only its loopback: the service must not wait for a network.
echo '(watch_network: false)' > "$FERRY_HOME/config.ron"
in_ns "$(command -v nginx)" -c "$work/nginx/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log"
base=http://127.0.0.1:18080
for _ in $(seq 50); do in_ns curl -fsS -o /dev/null -r 0-0 "$base/files/job.bin" && break; sleep 0.1; done
in_ns env FERRY_LOG="${FERRY_LOG:-warn}" "$ferry" daemon --foreground >"$work/daemon.log" 2>&1 &
for _ in $(seq 100); do in_ns "$ferry" list >/dev/null 2>&1 && break; sleep 0.1; done

in_ns python3 - "$ferry" "$base" "$work" <<'PY'
import json, os, subprocess, sys, time
ferry, base, work = sys.argv[1:4]
out = os.path.join(work, "out")

def job_bytes(job_id):
    text = subprocess.run([ferry, "list", "--json"], capture_output=True, text=True).stdout
    for job in json.loads(text or "[]"):
        if job["id"] == job_id:
            return job["bytes_transferred"]
    return 0

def rate_over(sample, seconds):
    """Bytes per second of `sample()` over `seconds`, read every 0.25 s."""
    start, t0 = sample(), time.monotonic()
    samples = []
    while time.monotonic() - t0 < seconds:
        time.sleep(0.25)
        samples.append((time.monotonic(), sample()))
    if os.environ.get("VERBOSE"):
        steps = [f"{(b - a) / (tb - ta) / 1e6:.1f}" for (ta, a), (tb, b) in zip(samples, samples[1:])]
        print("    MB/s every 0.25 s:", " ".join(steps))
    return (samples[-1][1] - start) / (samples[-1][0] - t0)

def curl(seconds, name):
    path = os.path.join(work, name)
    proc = subprocess.Popen(["curl", "-s", "-o", path, "--max-time", str(seconds),
                             f"{base}/files/curl.bin"])
    size = lambda: os.path.getsize(path) if os.path.exists(path) else 0
    return proc, size

# The link: curl alone.
proc, size = curl(6, "alone.bin")
time.sleep(2)
link = rate_over(size, 3.5)
proc.wait()
print(f"link (curl alone): {link / 1e6:.2f} MB/s")
time.sleep(2)  # the controller's window forgets it

failures = []
def check(what, value, low, high=None):
    share = value / link
    ok = share >= low and (high is None or share <= high)
    bound = f">= {low:.0%}" if high is None else f"{low:.0%}-{high:.0%}"
    print(f"  {what:<44} {value / 1e6:6.2f} MB/s = {share:5.0%} of the link (target {bound})"
          f"{'' if ok else '  MISSED'}")
    if not ok:
        failures.append(what)

for priority in ["normal", "foreground"]:
    print(f"{priority.upper()} job:")
    get = subprocess.Popen([ferry, "get", "--quiet", "--priority", priority, "--connections", "1",
                            "-o", out, f"{base}/files/job.bin"])
    job_id = None
    for _ in range(100):
        text = subprocess.run([ferry, "list", "--json"], capture_output=True, text=True).stdout
        jobs = [j for j in json.loads(text or "[]") if j["state"] in ("CONNECTING", "TRANSFERRING")]
        if jobs:
            job_id = jobs[0]["id"]
            break
        time.sleep(0.1)
    if job_id is None:
        sys.exit("the job did not start")
    job = lambda: job_bytes(job_id)
    time.sleep(2)
    alone = rate_over(job, 3)
    proc, size = curl(12, f"beside-{priority}.bin")
    t_curl = time.monotonic()
    time.sleep(3)
    curl_rate = rate_over(size, 8)
    job_beside = rate_over(job, 0.5)
    proc.wait()
    t_end = time.monotonic()
    if priority == "normal":
        check("job alone", alone, 0.80)
        check("curl beside it, from 3 s after its start", curl_rate, 0.80)
        time.sleep(max(0.0, 5 - (time.monotonic() - t_end)))
        check("job again, from 5 s after curl ended", rate_over(job, 3), 0.80)
    else:
        check("job alone", alone, 0.80)
        check("curl beside it (sharing)", curl_rate, 0.25, 0.75)
        check("job beside curl (sharing)", job_beside, 0.25, 0.75)
    subprocess.run([ferry, "cancel", job_id], capture_output=True)
    get.wait()
    time.sleep(1)
sys.exit(1 if failures else 0)
PY
