#!/usr/bin/env bash
# 95,000 idle connections on one machine: five `robochat serve --reuseport` processes sharing a
# port (each may hold 19,500 under a 20,000 open-file limit), filled by five `robochat bench`
# processes, each connecting from its own loopback address. Prints the servers' total resident
# memory before and with the connections, and the growth per connection. Loopback only; about a
# minute. Usage: benches/idle95k.sh [CONNECTIONS-PER-BENCH (default 19000)]
set -euo pipefail
cd "$(dirname "$0")/.."
per_bench=${1:-19000}
port=19990
cargo build --release --quiet
bin=target/release/robochat
servers=() benches=()
cleanup() { kill -TERM "${benches[@]}" "${servers[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

rss_sum() { # total VmRSS of the servers, in bytes
    local total=0 kb
    for pid in "${servers[@]}"; do
        kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
        total=$((total + kb * 1024))
    done
    echo "$total"
}
open_files() { # open files of the servers: listening sockets, poll, waker... and connections
    local total=0 pid
    for pid in "${servers[@]}"; do
        total=$((total + $(find "/proc/$pid/fd" -mindepth 1 | wc -l)))
    done
    echo "$total"
}
# Counted from the servers' own descriptors, so that only connections the servers hold count.
connections() { echo $(($(open_files) - files_before)); }

for i in 1 2 3 4 5; do
    # In a session of its own, as a service runs.
    setsid "$bin" serve --listen "127.0.0.1:$port" --reuseport --robot echo \
        --max-connections 19500 2>/dev/null </dev/null &
    servers+=($!)
done
sleep 1
before=$(rss_sum)
files_before=$(open_files)
for i in 1 2 3 4 5; do
    "$bin" bench --connect "127.0.0.1:$port" --source-ip "127.0.0.$((i + 1))" --idle "$per_bench" \
        --connections 1 --duration 150 --warmup 0 >/dev/null 2>"/tmp/robochat-idle95k-$i.log" &
    benches+=($!)
done
want=$((5 * (per_bench + 1)))
# The benches hold their connections for 150 s: room for connecting (a run started within a
# minute of the last one is slower, its ephemeral ports held in TIME_WAIT) and measuring.
for _ in $(seq 120); do
    [ "$(connections)" -ge "$want" ] && break
    sleep 1
done
sleep 2 # let the last greetings settle
open=$(connections)
after=$(rss_sum)
echo "servers: 5 (--reuseport), connections open: $open (wanted $want)"
echo "server memory: $((before / 1024)) KiB before, $((after / 1024)) KiB with the connections"
[ "$open" -gt 0 ] && echo "growth per connection: $(((after - before) / open)) bytes"
[ "$open" -eq "$want" ] || echo "not all connected: see the benches' errors in /tmp/robochat-idle95k-*.log"
