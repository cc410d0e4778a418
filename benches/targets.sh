#!/usr/bin/env bash
# Measures robochat's performance targets on this machine, with `robochat bench`, over loopback
# only. Takes about two minutes. Usage: benches/targets.sh [SECONDS-PER-RUN (default 5)]
#
#   1. memory per idle connection (19,000 connections, greeted, then after one message each)
#   2. echo and embedded robots: the default (--workers auto) against answering everything on
#      the loop (--workers 0), at 50 and 1,000 connections, with the server's CPU per message
#   3. robochat against the tutorial's design (seed_server.py, legacy framing) at 1,000
#   4. a slow robot (--robot-delay 100 --workers 32): throughput, greeting time while the pool
#      is saturated, and a queue overflow
#   5. the CPU of a server holding 10,000 idle connections
#
# Servers start in a session of their own (setsid), as a service does under systemd: the
# kernel schedules a session as a group, apart from the load generator's. ROBOCHAT_SAME_SESSION=1
# starts them from this script's session instead.
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

start() { # start ARGS... : a robochat server on the next port
    port=$((port + 1))
    if [ "${ROBOCHAT_SAME_SESSION:-0}" = 1 ]; then
        "$bin" serve --listen "127.0.0.1:$port" "$@" 2>/dev/null </dev/null &
    else
        setsid "$bin" serve --listen "127.0.0.1:$port" "$@" 2>/dev/null </dev/null &
    fi
    server_pid=$!
    wait_listening
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }
# measure LABEL BENCH-ARGS... : one bench run, with the server's CPU time per message sent
measure() {
    local label=$1 before after
    shift
    before=$(cpu_ticks)
    bench "$@" >/tmp/robochat-run.json
    after=$(cpu_ticks)
    python3 -c '
import json, os, sys
d = json.load(open("/tmp/robochat-run.json"))
cpu = (int(sys.argv[3]) - int(sys.argv[2])) / os.sysconf("SC_CLK_TCK") / max(d["sent"], 1) * 1e6
keys = ("msgs_per_sec", "p50_us", "p99_us", "errors")
print(sys.argv[1] + ": " + ", ".join(f"{k}={d[k]}" for k in keys)
      + f", server_cpu_us_per_msg={cpu:.2f}")' \
        "$label" "$before" "$after"
}
wait_listening() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "server on port $port did not start" >&2
    exit 1
}
stop() {
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    # Started with setsid, it may not be this shell's child: wait for it to be gone.
    while kill -0 "$server_pid" 2>/dev/null; do sleep 0.05; done
}
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

echo "== 2. echo and embedded robots: the default (--workers auto) against --workers 0"
for robot in echo embedded; do
    for conns in 50 1000; do
        for workers in auto 0; do
            start --robot "$robot" --workers "$workers"
            measure "$robot, --workers $workers, $conns connections" \
                --connections "$conns" --duration "$secs" --warmup 1
            stop
        done
    done
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

echo "== 5. CPU of a server holding 10,000 idle connections"
start --robot echo --max-connections 10500
# One connection sends a message a second; the other 10,000 only stay open.
bench --idle 10000 --connections 1 --rate 1 --duration 12 --warmup 0 >/dev/null &
load=$!
for _ in $(seq 200); do
    [ "$(ls "/proc/$server_pid/fd" | wc -l)" -ge 10000 ] && break
    sleep 0.1
done
sleep 1
before=$(cpu_ticks)
sleep 10
after=$(cpu_ticks)
wait "$load"
python3 -c 'import os, sys; t = (int(sys.argv[2]) - int(sys.argv[1])) / os.sysconf("SC_CLK_TCK")
print(f"10000 idle connections: server CPU {t / 10 * 100:.2f}% of a core over 10 s")' "$before" "$after"
stop
