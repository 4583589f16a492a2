#!/usr/bin/env python3
"""Measures the server's resident memory per idle WebSocket connection.

Starts `switchboard echo`, opens N connections from helper processes (each process holds
at most 9,000, since a process may hold at most 20,000 descriptors here), completes every
handshake, waits for things to settle, and reads the server's VmRSS from /proc. Reports
(RSS with N open - RSS with none) / N.

Usage: scripts/idle_memory.py [N ...]   (default: 10000 19000)
Env: SWITCHBOARD=path to the binary (default target/release/switchboard)
"""
import os
import socket
import subprocess
import sys
import time

PER_PROCESS = 9000
REQUEST = (
    b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def hold(port: int, count: int) -> None:
    """Child mode: open `count` connections, say so, then hold them until stdin closes."""
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(REQUEST)
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            chunk = s.recv(1)
            if not chunk:
                raise SystemExit("server closed during handshake")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            raise SystemExit(f"handshake refused: {head[:40]!r}")
        socks.append(s)
    print("ready", flush=True)
    sys.stdin.read()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def measure(binary: str, n: int, port: int) -> None:
    server = subprocess.Popen(
        [binary, "echo", "--listen", f"127.0.0.1:{port}", "--workers", "2"],
        env={**os.environ, "RUST_LOG": "warn"},
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        time.sleep(0.5)
        base = rss_kib(server.pid)
        children = []
        left = n
        while left > 0:
            k = min(left, PER_PROCESS)
            children.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--hold", str(port), str(k)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
            left -= k
        for c in children:
            line = c.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"client failed: {line!r}")
        time.sleep(2)
        rss = rss_kib(server.pid)
        per = (rss - base) * 1024 / n
        print(
            f"{n} idle connections: server RSS {base} KiB empty, {rss} KiB with them: "
            f"{per:.0f} bytes per connection"
        )
        for c in children:
            c.stdin.close()
            c.wait()
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--hold":
        hold(int(sys.argv[2]), int(sys.argv[3]))
        return
    binary = os.environ.get("SWITCHBOARD", "target/release/switchboard")
    counts = [int(a) for a in sys.argv[1:]] or [10000, 19000]
    for i, n in enumerate(counts):
        measure(binary, n, 19100 + i)


if __name__ == "__main__":
    main()
