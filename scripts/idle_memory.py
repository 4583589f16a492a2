#!/usr/bin/env python3
"""Measures the server's resident memory per idle WebSocket connection.

Starts `switchboard echo`, opens N connections from helper processes (each process holds
at most 9,000, since a process may hold at most 20,000 descriptors here), completes every
handshake, waits for things to settle, and reads the server's VmRSS from /proc. Reports
(RSS with N open - RSS with none) / N.

Modes (MODE=..., default plain):
- plain: ws://
- tls: wss:// (a self-signed certificate made with openssl for the run)
- tls-deflate: wss:// with permessage-deflate, default terms (no context takeover);
  each connection sends one compressed message and reads the compressed echo first
- tls-deflate-own: the same with context takeover both ways, so each connection keeps
  its own compressor and decompressor

Usage: [MODE=tls] scripts/idle_memory.py [N ...]   (default: 10000 19000)
Env: SWITCHBOARD=path to the binary (default target/release/switchboard)
"""
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import zlib

PER_PROCESS = 9000
REQUEST = (
    b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


OFFER = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
MESSAGE = b'{"type":"PRIVATE_MESSAGE","body":{"toUser":"bob","content":"hello, hello, hello"}}' * 4


def compressed_frame(payload: bytes) -> bytes:
    """A masked text frame with RSV1, its payload deflated as a client would."""
    c = zlib.compressobj(wbits=-15)
    z = c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH)
    z = z[:-4]
    mask = b"\x01\x02\x03\x04"
    assert len(z) < 126
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(z))
    return bytes([0xC1, 0x80 | len(z)]) + mask + masked


def read_exact(s, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise SystemExit("server closed")
        out += chunk
    return out


def hold(port: int, count: int, mode: str) -> None:
    """Child mode: open `count` connections, say so, then hold them until stdin closes."""
    socks = []
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deflate = "deflate" in mode
    request = REQUEST[:-2] + (OFFER if deflate else b"") + b"\r\n"
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        if mode.startswith("tls"):
            s = ctx.wrap_socket(s, server_hostname="localhost")
        s.sendall(request)
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            chunk = s.recv(1)
            if not chunk:
                raise SystemExit("server closed during handshake")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            raise SystemExit(f"handshake refused: {head[:40]!r}")
        if deflate:
            if b"permessage-deflate" not in head:
                raise SystemExit("deflate not agreed")
            s.sendall(compressed_frame(MESSAGE))
            b0, n = read_exact(s, 2)
            if b0 != 0xC1:
                raise SystemExit(f"expected a compressed echo, got {b0:#x}")
            read_exact(s, n)
        socks.append(s)
    print("ready", flush=True)
    sys.stdin.read()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def server_args(mode: str, tmp: str) -> list:
    args = []
    if mode.startswith("tls"):
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost"],
            check=True, capture_output=True,
        )
        args += ["--tls-cert", cert, "--tls-key", key]
    if "deflate" in mode:
        conf = os.path.join(tmp, "engine.toml")
        own = "true" if mode.endswith("-own") else "false"
        with open(conf, "w") as f:
            f.write(f"[deflate]\nenabled = true\nserver_context_takeover = {own}\n"
                    f"client_context_takeover = {own}\n")
        args += ["--config", conf]
    return args


def measure(binary: str, n: int, port: int, mode: str) -> None:
    tmp = tempfile.mkdtemp(prefix="switchboard-idle-")
    server = subprocess.Popen(
        [binary, "echo", "--listen", f"127.0.0.1:{port}", "--workers", "2"]
        + server_args(mode, tmp),
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
                    [sys.executable, __file__, "--hold", str(port), str(k), mode],
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
            f"{mode}: {n} idle connections: server RSS {base} KiB empty, {rss} KiB with "
            f"them: {per:.0f} bytes per connection"
        )
        for c in children:
            c.stdin.close()
            c.wait()
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--hold":
        hold(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
        return
    binary = os.environ.get("SWITCHBOARD", "target/release/switchboard")
    mode = os.environ.get("MODE", "plain")
    counts = [int(a) for a in sys.argv[1:]] or [10000, 19000]
    for i, n in enumerate(counts):
        measure(binary, n, 19100 + i, mode)


if __name__ == "__main__":
    main()
