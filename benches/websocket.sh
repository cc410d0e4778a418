#!/usr/bin/env bash
# WebSocket against the line protocol on one server (`serve --robot echo --web`, started with
# `setsid` as a service runs): echo throughput at 50 and 1,000 connections, and handshakes per
# second (`bench --churn`: connect, greeting (with the upgrade), close, again). Runs alternate
# between the two listeners, and the medians of RUNS (default 3) are printed with the spread and
# the server's CPU time per message or handshake (from /proc/PID/stat over the run).
# Loopback only; about three minutes with the defaults. Usage: benches/websocket.sh [RUNS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
secs=${2:-5}
cargo build --release --quiet
bin=target/release/robochat
port=19600
results=$(mktemp)
trap 'rm -f "$results"' EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

one_run() { # mode(messages|churn) transport(line|web) connections
    local mode=$1 transport=$2 conns=$3 pid t0 t1 out target
    port=$((port + 2))
    setsid "$bin" serve --robot echo --listen "127.0.0.1:$port" --web "127.0.0.1:$((port + 1))" \
        </dev/null 2>/dev/null &
    pid=$!
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$((port + 1))") 2>/dev/null && break
        sleep 0.1
    done
    local args=(bench --connections "$conns" --duration "$secs" --warmup 1 --json)
    if [ "$transport" = web ]; then
        args+=(--web --connect "127.0.0.1:$((port + 1))")
    else
        args+=(--connect "127.0.0.1:$port")
    fi
    [ "$mode" = churn ] && args+=(--churn)
    t0=$(cpu_ticks "$pid")
    out=$("$bin" "${args[@]}" 2>/dev/null)
    t1=$(cpu_ticks "$pid")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    python3 -c '
import json, os, sys
j = json.loads(sys.argv[1])
cpu_us = (int(sys.argv[3]) - int(sys.argv[2])) / os.sysconf("SC_CLK_TCK") * 1e6
churn = j.get("handshakes_per_sec") is not None
rate = j["handshakes_per_sec"] if churn else j["msgs_per_sec"]
# The CPU was measured over warm-up and run; the bench counts both in "sent" (messages); for
# handshakes, the run alone is counted, so CPU per handshake is an upper bound.
count = j["handshakes"] if churn else j["sent"]
print(sys.argv[4], rate, j["p99_us"], cpu_us / max(count, 1), j["errors"] + j["connect_failures"])
' "$out" "$t0" "$t1" "$mode,$transport,$conns" >>"$results"
}

for _ in $(seq "$runs"); do
    for conns in 50 1000; do
        for transport in line web; do
            one_run messages "$transport" "$conns"
        done
    done
    for transport in line web; do
        one_run churn "$transport" 50
    done
done

python3 - "$results" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    key, rate, p99, cpu, errors = line.split()
    runs[key].append((float(rate), float(p99) / 1000, float(cpu), int(errors)))
med = statistics.median
print("what      transport  conns  per second median (min-max)   p99 ms (min-max)    CPU µs each  errors")
for key, rs in runs.items():
    mode, transport, conns = key.split(",")
    rate = [r[0] for r in rs]; p99 = [r[1] for r in rs]; cpu = [r[2] for r in rs]
    print(f"{mode:9} {transport:9} {conns:>5}  {med(rate):>9,.0f} ({min(rate):,.0f}-{max(rate):,.0f})"
          f"  {med(p99):6.2f} ({min(p99):.2f}-{max(p99):.2f})  {med(cpu):10.2f}  {sum(r[3] for r in rs)}")
for conns in ("50", "1000"):
    line, web = runs.get(f"messages,line,{conns}"), runs.get(f"messages,web,{conns}")
    if line and web:
        print(f"WebSocket / line at {conns}: throughput {med(r[0] for r in web) / med(r[0] for r in line):.2f} x, "
              f"p99 {med(r[1] for r in web) / med(r[1] for r in line):.2f} x")
PY
