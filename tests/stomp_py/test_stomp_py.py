"""stomp.py 9 (stomp.WSConnection), unchanged, against the STOMP endpoint of
`switchboard serve` over WebSocket: CONNECT with login/passcode (stomp.py offers no
subprotocol), a /topic and a /user/queue subscription, SEND, MESSAGE headers, client
acks with a NACK that is redelivered, a transaction, receipts, DISCONNECT.

SWITCHBOARD = path to the binary (default: target/release/switchboard).
Run: python3 -m unittest tests/stomp_py/test_stomp_py.py
"""

import os
import queue
import random
import socket
import subprocess
import tempfile
import time
import unittest

import stomp

HERE = os.path.dirname(os.path.abspath(__file__))
BINARY = os.environ.get(
    "SWITCHBOARD", os.path.join(HERE, "..", "..", "target", "release", "switchboard")
)


class Listener(stomp.ConnectionListener):
    """Every frame the client receives, in order, on a queue."""

    def __init__(self):
        self.frames = queue.Queue()

    def on_message(self, frame):
        self.frames.put(("MESSAGE", frame))

    def on_receipt(self, frame):
        self.frames.put(("RECEIPT", frame))

    def on_error(self, frame):
        self.frames.put(("ERROR", frame))

    def next(self, command, timeout=5.0):
        kind, frame = self.frames.get(timeout=timeout)
        if kind != command:
            raise AssertionError(f"expected {command}, got {kind}: {frame}")
        return frame

    def take(self, *commands, timeout=5.0):
        """The next frames, one of each command, in whichever order they came."""
        got = {}
        for _ in commands:
            kind, frame = self.frames.get(timeout=timeout)
            got[kind] = frame
        if sorted(got) != sorted(commands):
            raise AssertionError(f"expected {commands}, got {got}")
        return got

    def quiet(self, seconds):
        try:
            kind, frame = self.frames.get(timeout=seconds)
        except queue.Empty:
            return
        raise AssertionError(f"expected nothing, got {kind}: {frame}")


class StompPy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.port = random.randint(20000, 30000)
        cls.server = subprocess.Popen(
            [BINARY, "serve", "--listen", f"127.0.0.1:{cls.port}",
             "--set", f"store.path={cls.dir.name}/store.db"],
            stdout=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", cls.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or cls.server.poll() is not None:
                    raise RuntimeError("switchboard serve did not start")
                time.sleep(0.1)

    @classmethod
    def tearDownClass(cls):
        cls.server.terminate()
        cls.server.wait(timeout=10)
        cls.dir.cleanup()

    def connect(self, user):
        conn = stomp.WSConnection([("127.0.0.1", self.port)], ws_path="/stomp")
        listener = Listener()
        conn.set_listener("l", listener)
        # Demo auth: the passcode is the user id.
        conn.connect(login=user, passcode=user, wait=True)
        self.addCleanup(self.disconnect_quietly, conn)
        return conn, listener

    @staticmethod
    def disconnect_quietly(conn):
        # A test may end with the server closing the connection (after an ERROR);
        # stomp.py may not have noticed yet, and its DISCONNECT then meets a closed
        # socket. That is the expected end, not a failure.
        try:
            if conn.is_connected():
                conn.disconnect()
        except OSError:
            pass

    def subscribe(self, conn, listener, dest, sub_id, ack="auto"):
        conn.subscribe(dest, id=sub_id, ack=ack, headers={"receipt": f"r-{sub_id}"})
        self.assertEqual(listener.next("RECEIPT").headers["receipt-id"], f"r-{sub_id}")

    def test_topic_user_queue_and_receipts(self):
        alice, la = self.connect("alice")
        bob, lb = self.connect("bob")
        self.subscribe(alice, la, "/topic/news", "1")
        self.subscribe(alice, la, "/user/queue/reply", "2")
        self.subscribe(bob, lb, "/topic/news", "1")

        bob.send("/topic/news", "breaking", content_type="text/plain",
                 headers={"receipt": "sent", "x-app": "42"})
        # The sender's own copy and the receipt: the spec does not order them.
        got = lb.take("RECEIPT", "MESSAGE")
        self.assertEqual(got["RECEIPT"].headers["receipt-id"], "sent")
        for m in (la.next("MESSAGE"), got["MESSAGE"]):
            self.assertEqual(m.body, "breaking")
            self.assertEqual(m.headers["destination"], "/topic/news")
            self.assertEqual(m.headers["subscription"], "1")
            self.assertEqual(m.headers["content-type"], "text/plain")
            self.assertEqual(m.headers["x-app"], "42")
            self.assertIn("message-id", m.headers)

        bob.send("/user/alice/queue/reply", '{"hi":"alice"}', content_type="application/json")
        m = la.next("MESSAGE")
        self.assertEqual(m.headers["destination"], "/user/queue/reply")
        self.assertEqual(m.body, '{"hi":"alice"}')
        lb.quiet(0.3)

    def test_client_acks_nack_redelivers_and_transactions(self):
        carol, lc = self.connect("carol")
        dave, ld = self.connect("dave")
        self.subscribe(carol, lc, "/queue/jobs", "j", ack="client-individual")

        dave.send("/queue/jobs", "job-1")
        m = lc.next("MESSAGE")
        self.assertEqual(m.body, "job-1")
        carol.nack(m.headers["ack"])
        again = lc.next("MESSAGE")
        self.assertEqual(again.body, "job-1")
        carol.ack(again.headers["ack"], receipt="acked")
        self.assertEqual(lc.next("RECEIPT").headers["receipt-id"], "acked")

        dave.begin("tx1")
        dave.send("/queue/jobs", "job-2", transaction="tx1")
        lc.quiet(0.3)
        dave.commit("tx1")
        m = lc.next("MESSAGE")
        self.assertEqual(m.body, "job-2")
        carol.ack(m.headers["ack"])

        dave.begin("tx2")
        dave.send("/queue/jobs", "dropped", transaction="tx2")
        dave.abort("tx2")
        lc.quiet(0.3)

    def test_app_destination_without_backend_is_an_error(self):
        eve, le = self.connect("eve")
        eve.send("/app/hello", "x")
        e = le.next("ERROR")
        self.assertIn("backend", e.headers["message"])

    def test_disconnect_with_receipt(self):
        frank, lf = self.connect("frank")
        frank.disconnect(receipt="bye")
        self.assertEqual(lf.next("RECEIPT").headers["receipt-id"], "bye")
        self.assertFalse(frank.is_connected())


if __name__ == "__main__":
    unittest.main()
