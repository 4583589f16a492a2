"""Python `websockets` (its sync client, unchanged) against `switchboard serve` with
TLS and permessage-deflate: an SSL context that trusts only a CA made for the test
(`trustme`), deflate negotiated by the client's default offer, a chat both ways, a
message that compresses, the TLS and deflate counters on /metrics over https, and a
certificate reload on SIGHUP that keeps an open connection and serves the new
certificate to the next one.

SWITCHBOARD = path to the binary (default: target/release/switchboard).
Run: python3 -m unittest tests/python_ws/test_wss.py
"""

import json
import os
import re
import signal
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request

import trustme
from websockets.sync.client import connect

HERE = os.path.dirname(os.path.abspath(__file__))
BINARY = os.environ.get(
    "SWITCHBOARD", os.path.join(HERE, "..", "..", "target", "release", "switchboard")
)


def client_context(ca):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(ctx)
    return ctx


class Server:
    """`switchboard serve` on a free port, speaking TLS with `cert` and `key`."""

    def __init__(self, cert, key, store):
        self.proc = subprocess.Popen(
            [BINARY, "serve", "--listen", "127.0.0.1:0",
             "--set", f"tls.cert={cert}", "--set", f"tls.key={key}",
             "--set", "engine.deflate.enabled=true",
             "--set", "notify_join=false",
             "--set", f"store.path={store}"],
            stderr=subprocess.PIPE, text=True,
            env={**os.environ, "RUST_LOG": "info"},
        )
        self.lines = []
        self.port = None
        deadline = time.time() + 20
        for line in self.proc.stderr:
            self.lines.append(line)
            m = re.search(r"local_addr=127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
            if time.time() > deadline:
                break
        if self.port is None:
            self.proc.kill()
            raise AssertionError("no local_addr in the log:\n" + "".join(self.lines))
        # Keep reading the log so the server never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for_log(self, pattern, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(re.search(pattern, l) for l in self.lines):
                return
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in the log:\n" + "".join(self.lines))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stderr.close()


def send(ws, kind, body, rid):
    ws.send(json.dumps({"type": kind, "body": body, "requestId": rid}))


def next_of(ws, kind):
    for _ in range(50):
        m = json.loads(ws.recv(timeout=10))
        if m["type"] == kind:
            return m
    raise AssertionError(f"no {kind}")


class WssWithDeflate(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.ca = trustme.CA()
        self.cert_path = os.path.join(self.dir.name, "cert.pem")
        self.key_path = os.path.join(self.dir.name, "key.pem")
        self.write_cert(self.ca)
        self.server = Server(self.cert_path, self.key_path,
                             os.path.join(self.dir.name, "store.db"))
        self.uri = f"wss://localhost:{self.server.port}/ws"

    def tearDown(self):
        self.server.stop()
        self.dir.cleanup()

    def write_cert(self, ca):
        leaf = ca.issue_cert("localhost", "127.0.0.1")
        # Written beside and renamed: the server never reads half a file.
        for blob, path in ((leaf.private_key_pem, self.key_path),
                           (leaf.cert_chain_pems[0], self.cert_path)):
            blob.write_to_path(path + ".new")
            os.replace(path + ".new", path)

    def login(self, user, ctx=None):
        ws = connect(f"{self.uri}?accessToken={user}", ssl=ctx or client_context(self.ca),
                     open_timeout=10)
        auth = next_of(ws, "AUTH_RESPONSE")
        self.assertEqual(auth["body"]["code"], 0, auth)
        return ws

    def test_chat_over_wss_with_deflate(self):
        alice = self.login("alice")
        bob = self.login("bob")
        ext = alice.response.headers.get("Sec-WebSocket-Extensions", "")
        self.assertIn("permessage-deflate", ext)
        # The client's default offer asks for client_max_window_bits; the server answers
        # without context takeover on its side, its default.
        self.assertIn("server_no_context_takeover", ext)

        big = "switchboard " * 2000  # 24 KB that deflate shrinks a lot
        send(alice, "SEND_TO_ONE_REQUEST",
             {"toUser": "bob", "msgId": "m1", "content": big}, "r1")
        self.assertEqual(next_of(alice, "SEND_RESPONSE")["body"]["code"], 0)
        m = next_of(bob, "SEND_TO_USER_REQUEST")
        self.assertEqual(m["body"]["content"], big)
        self.assertEqual(m["body"]["fromUser"], "alice")
        send(bob, "SEND_TO_ONE_REQUEST",
             {"toUser": "alice", "msgId": "m2", "content": "short reply"}, "r2")
        self.assertEqual(next_of(alice, "SEND_TO_USER_REQUEST")["body"]["content"],
                         "short reply")

        ctx = client_context(self.ca)
        with urllib.request.urlopen(
                f"https://localhost:{self.server.port}/metrics", context=ctx,
                timeout=10) as r:
            metrics = r.read().decode()
        sessions = re.search(r"^switchboard_deflate_sessions_total (\d+)", metrics, re.M)
        handshakes = re.search(r"^switchboard_tls_handshakes_total (\d+)", metrics, re.M)
        self.assertIsNotNone(sessions, metrics)
        self.assertGreaterEqual(int(sessions.group(1)), 2)
        self.assertGreaterEqual(int(handshakes.group(1)), 3)
        alice.close()
        bob.close()

    def test_a_client_that_does_not_trust_the_ca_is_refused(self):
        stranger = trustme.CA()
        with self.assertRaises(ssl.SSLCertVerificationError):
            connect(f"{self.uri}?accessToken=eve", ssl=client_context(stranger),
                    open_timeout=10)
        # The server is unharmed.
        self.login("alice").close()

    def test_sighup_reloads_the_certificate_and_keeps_open_connections(self):
        old = self.login("alice")
        new_ca = trustme.CA()
        self.write_cert(new_ca)
        self.server.proc.send_signal(signal.SIGHUP)
        self.server.wait_for_log(r"TLS certificates reloaded")
        # The next connection gets the new certificate: only the new CA's clients pass.
        with self.assertRaises(ssl.SSLCertVerificationError):
            connect(f"{self.uri}?accessToken=x", ssl=client_context(self.ca), open_timeout=10)
        fresh = self.login("bob", ctx=client_context(new_ca))
        # The connection opened before the reload is still up, on its old session.
        send(old, "PING", {}, "p")
        self.assertEqual(next_of(old, "PONG")["requestId"], "p")
        send(fresh, "SEND_TO_ONE_REQUEST",
             {"toUser": "alice", "msgId": "m3", "content": "after reload"}, "r")
        self.assertEqual(next_of(old, "SEND_TO_USER_REQUEST")["body"]["content"],
                         "after reload")
        old.close()
        fresh.close()


if __name__ == "__main__":
    unittest.main()
