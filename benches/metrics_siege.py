#!/usr/bin/env python3
"""Scrapes of a robochat metrics port while other clients hold it: IDLE connections that send
nothing, and DRIBBLE connections that send a request head one byte every 100 ms. Prints the
time of each of SCRAPES scrapes (connect, GET /metrics, the whole answer), with the median and
the worst.

    python3 benches/metrics_siege.py HOST:PORT [IDLE] [DRIBBLE] [SCRAPES]

Defaults: 200 idle, 20 dribbling, 50 scrapes. Loopback only.
"""

import socket
import sys
import threading
import time


def dribble(addr, stop):
    s = socket.create_connection(addr)
    s.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
    while not stop.is_set():
        try:
            s.sendall(b"a")
        except OSError:
            return  # closed by the server, as it should be at its deadline
        time.sleep(0.1)


def scrape(addr):
    started = time.monotonic()
    with socket.create_connection(addr, timeout=20) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: robochat\r\n\r\n")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    if not answer.startswith(b"HTTP/1.1 200 OK"):
        sys.exit(f"unexpected answer: {answer[:80]!r}")
    return time.monotonic() - started


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    host, port = sys.argv[1].rsplit(":", 1)
    if not host.startswith("127."):
        sys.exit("loopback addresses only")
    addr = (host, int(port))
    idle_n, dribble_n, scrapes = (int(a) for a in (sys.argv[2:] + ["200", "20", "50"][len(sys.argv) - 2:])[:3])
    idle = [socket.create_connection(addr) for _ in range(idle_n)]
    stop = threading.Event()
    threads = [threading.Thread(target=dribble, args=(addr, stop)) for _ in range(dribble_n)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    times = sorted(scrape(addr) for _ in range(scrapes))
    stop.set()
    for t in threads:
        t.join()
    for s in idle:
        s.close()
    print(
        f"{scrapes} scrapes with {idle_n} idle and {dribble_n} dribbling clients: "
        f"median {times[len(times) // 2] * 1000:.2f} ms, worst {times[-1] * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
