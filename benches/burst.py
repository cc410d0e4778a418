#!/usr/bin/env python3
"""N people send one message each at the same moment; prints when each reply line came.

Usage: benches/burst.py HOST:PORT [PEOPLE (default 50)] [TEXT (default "hello")]

Each person connects, reads the greeting, and then everyone sends `小明::TEXT` (the tutorial's
username) at once. Prints, for each reply, the seconds after sending and the line's start, then
a summary: how many answers, how many ERR lines, the first and last time, and whether any
connection sent more than one line. Loopback only; ends within 60 s.
"""
import socket
import sys
import time


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    people = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    text = sys.argv[3] if len(sys.argv) > 3 else "hello"
    assert host in ("127.0.0.1", "localhost", "::1"), "loopback only"
    conns = []
    for _ in range(people):
        s = socket.create_connection((host, int(port)), timeout=60)
        f = s.makefile("rb")
        f.readline()  # the greeting
        conns.append((s, f))
    message = f"小明::{text}\n".encode()
    start = time.monotonic()
    for s, _ in conns:
        s.sendall(message)
    results = []
    for i, (s, f) in enumerate(conns):
        line = f.readline().decode(errors="replace").rstrip("\n")
        results.append((time.monotonic() - start, i, line))
    # Exactly one line each: nothing more within a second.
    extra = 0
    for s, _ in conns:
        s.settimeout(0.02)
    time.sleep(1)
    for s, _ in conns:
        try:
            if s.recv(1, socket.MSG_PEEK):
                extra += 1
        except (socket.timeout, BlockingIOError):
            pass
    for s, _ in conns:
        s.close()
    results.sort()
    for t, i, line in results:
        print(f"{t:7.3f} s  #{i:<3} {line[:70]}")
    errors = sum(1 for _, _, line in results if line.startswith("ERR "))
    print(
        f"people {people}: answers {people - errors}, ERR lines {errors}, "
        f"first {results[0][0]:.3f} s, last {results[-1][0]:.3f} s, "
        f"connections with more than one line: {extra}"
    )


if __name__ == "__main__":
    main()
