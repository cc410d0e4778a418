#!/usr/bin/env bash
# The default `--workers auto` against `--workers 0`, for the echo and embedded robots at 50 and
# 1,000 connections, with the server started in a session of its own (`setsid`, as a service runs)
# and from the benchmark's shell. Runs alternate, and the medians of RUNS (default 3) are printed
# with the spread and the server's CPU time per message (from /proc/PID/stat over the run).
# Loopback only; about six minutes with the defaults. Usage: benches/workers.sh [RUNS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
secs=${2:-5}
cargo build --release --quiet
bin=target/release/robochat
port=19400
results=$(mktemp)
trap 'rm -f "$results"' EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

one_run() { # launch robot connections workers
    local launch=$1 robot=$2 conns=$3 workers=$4 pid t0 t1 out
    port=$((port + 1))
    local args=(serve --listen "127.0.0.1:$port" --robot "$robot" --workers "$workers")
    if [ "$launch" = setsid ]; then
        setsid "$bin" "${args[@]}" </dev/null 2>/dev/null &
    else
        "$bin" "${args[@]}" </dev/null 2>/dev/null &
    fi
    pid=$!
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    t0=$(cpu_ticks "$pid")
    out=$("$bin" bench --connect "127.0.0.1:$port" --connections "$conns" --duration "$secs" \
        --warmup 1 --json 2>/dev/null)
    t1=$(cpu_ticks "$pid")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    python3 -c '
import json, os, sys
j = json.loads(sys.argv[1])
cpu_us = (int(sys.argv[3]) - int(sys.argv[2])) / os.sysconf("SC_CLK_TCK") * 1e6
# The CPU was measured over warm-up and run; the bench counts both in "sent".
print(sys.argv[4], j["msgs_per_sec"], j["p99_us"], cpu_us / max(j["sent"], 1), j["errors"])
' "$out" "$t0" "$t1" "$launch,$robot,$conns,$workers" >>"$results"
}

for _ in $(seq "$runs"); do
    for launch in setsid shell; do
        for robot in echo embedded; do
            for conns in 50 1000; do
                for workers in auto 0; do
                    one_run "$launch" "$robot" "$conns" "$workers"
                done
            done
        done
    done
done

python3 - "$results" <<'EOF'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    key, rate, p99, cpu, errors = line.split()
    runs[key].append((float(rate), float(p99) / 1000, float(cpu), int(errors)))
def med(values):
    return statistics.median(values)
print("launch  robot     conns  workers  msgs/s median (min-max)        p99 ms (min-max)    CPU µs/msg  errors")
for key, rs in runs.items():
    launch, robot, conns, workers = key.split(",")
    rate = [r[0] for r in rs]; p99 = [r[1] for r in rs]; cpu = [r[2] for r in rs]
    print(f"{launch:7} {robot:9} {conns:>5}  {workers:7}  {med(rate):>9,.0f} ({min(rate):,.0f}-{max(rate):,.0f})"
          f"  {med(p99):6.2f} ({min(p99):.2f}-{max(p99):.2f})  {med(cpu):10.2f}  {sum(r[3] for r in rs)}")
EOF
