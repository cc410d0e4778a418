#!/usr/bin/env bash
# Measures robochat's performance targets on this machine, with `robochat bench`, over loopback
# only. Takes about four minutes. Usage: benches/targets.sh [SECONDS-PER-RUN (default 5)]
#
#   1. memory per idle connection (19,000 connections, greeted, then after one message each)
#   2. echo robot: the default worker pool against answering on the loop (--workers 0),
#      at 50 and 1,000 connections
#   3. robochat against the tutorial's design (seed_server.py, legacy framing) at 1,000
#   4. a slow robot (--robot-delay 100 --workers 32): throughput, greeting time while the pool
#      is saturated, and a queue overflow
#
# Each line printed is one run: what was measured and the bench's own figures.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
seed=${SEED_SERVER:-../shared/seed/seed_server.py}
port=19870

cargo build --release --quiet
bin=target/release/robochat
server_pid=

start() { # start NAME ARGS... : a robochat server on the next port
    port=$((port + 1))
    "$bin" serve --listen "127.0.0.1:$port" "$@" 2>/dev/null &
    server_pid=$!
    wait_listening
}
wait_listening() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "server on port $port did not start" >&2
    exit 1
}
stop() { kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; }
trap stop EXIT
bench() { "$bin" bench --connect "127.0.0.1:$port" --json "$@" 2>/dev/null; }
show() { # show LABEL KEYS... : pick keys out of the JSON on stdin
    python3 -c '
import json, sys
label, keys = sys.argv[1], sys.argv[2:]
d = json.load(sys.stdin)
print(label + ": " + ", ".join(f"{k}={d[k]}" for k in keys))' "$@"
}

echo "== 1. memory per idle connection"
start --robot echo --max-connections 19500
bench --idle 19000 --idle-message --connections 10 --duration 2 --warmup 0.5 --server-pid "$server_pid" |
    show "19000 idle" server_rss_before_bytes server_rss_after_idle_bytes server_rss_bytes_per_idle \
        server_rss_bytes_per_idle_after_message connect_failures
stop

echo "== 2. echo robot: worker pool (default 4) against --workers 0"
for workers in 0 4; do
    start --robot echo --workers "$workers"
    for conns in 50 1000; do
        bench --connections "$conns" --duration "$secs" --warmup 1 |
            show "workers $workers, $conns connections" msgs_per_sec p50_us p99_us p999_us errors
    done
    stop
done

echo "== 3. the tutorial's design at 1000 connections (legacy framing), and robochat"
if [ -f "$seed" ]; then
    port=$((port + 1))
    python3 "$seed" "$port" &
    server_pid=$!
    wait_listening
    # python3 may be a launcher: measure the process that runs the server.
    server_pid=$(pgrep -nf "seed_server.py $port" || echo "$server_pid")
    # Its listen backlog is 128: open connections no faster than that.
    bench --idle 1000 --idle-message --connections 1 --framing legacy --connect-concurrency 100 \
        --duration 1 --warmup 0 --server-pid "$server_pid" |
        show "seed_server.py, 1000 idle" server_rss_bytes_per_idle \
            server_rss_bytes_per_idle_after_message
    bench --connections 1000 --framing legacy --connect-concurrency 100 --duration "$secs" \
        --warmup 1 --server-pid "$server_pid" |
        show "seed_server.py, 1000 connections" msgs_per_sec p50_us p99_us p999_us errors \
            server_rss_before_bytes server_rss_end_bytes
    stop
else
    echo "(skipped: $seed not found; set SEED_SERVER)"
fi
start --robot echo
bench --connections 1000 --duration "$secs" --warmup 1 |
    show "robochat, 1000 connections" msgs_per_sec p50_us p99_us p999_us errors
stop

echo "== 4. slow robot: --robot-delay 100 --workers 32"
start --robot echo --workers 32 --robot-delay 100
bench --connections 200 --duration $((secs * 2)) --warmup 2 >/tmp/robochat-slow.json &
load=$!
sleep 4
for i in 1 2 3; do
    bench --idle 1 --connections 1 --duration 0.3 --warmup 0 |
        show "new connection while saturated ($i)" connect_p50_us connect_max_us
done
wait "$load"
show "200 connections, saturated pool" msgs_per_sec p50_us p99_us errors </tmp/robochat-slow.json
stop
start --robot echo --workers 32 --robot-delay 100 --queue 64
bench --connections 1000 --duration "$secs" --warmup 1 --server-pid "$server_pid" |
    show "1000 connections, queue 64 (overflow)" msgs_per_sec err_replies server_rss_before_bytes \
        server_rss_end_bytes
stop
