#!/usr/bin/env python3
"""A reconnect storm: COUNT clients connect to a robochat server at the same moment.

The server is stopped (SIGSTOP) while every connect is started, as if it were still starting
after a restart or busy with a load balancer's failover, then let go (SIGCONT); the script
waits for every greeting and prints how long the last one took, with the percentiles.
Connects the kernel dropped (the listen backlog was full) are retried by TCP after 1 s, 3 s,
7 s, ..., which shows as a jump in the times.

    python3 benches/reconnect_storm.py HOST:PORT SERVER_PID COUNT

Loopback only; the process needs COUNT open files (ulimit -n).
"""

import os
import selectors
import signal
import socket
import sys
import time


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    host, port = sys.argv[1].rsplit(":", 1)
    pid, count = int(sys.argv[2]), int(sys.argv[3])
    if not host.startswith("127.") and host not in ("localhost", "::1", "[::1]"):
        sys.exit("loopback addresses only")
    sel = selectors.DefaultSelector()
    os.kill(pid, signal.SIGSTOP)
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((host, int(port)))
            sel.register(s, selectors.EVENT_READ, [])
    finally:
        started = time.monotonic()
        os.kill(pid, signal.SIGCONT)
    times = []
    deadline = started + 60
    while len(times) < count and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            try:
                data = key.fileobj.recv(256)
            except OSError as e:
                sys.exit(f"a connection failed: {e}")
            if not data:
                sys.exit("a connection was closed before its greeting")
            if b"\n" in data:
                times.append(time.monotonic() - started)
                sel.unregister(key.fileobj)
                key.fileobj.close()
    times.sort()
    if len(times) < count:
        print(f"{count - len(times)} of {count} never greeted within 60 s")
        return 1
    pct = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    print(
        f"{count} connections greeted: p50 {pct(0.5)*1000:.0f} ms, p99 {pct(0.99)*1000:.0f} ms, "
        f"last {times[-1]*1000:.0f} ms; {sum(t > 0.9 for t in times)} waited for a SYN retry"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
