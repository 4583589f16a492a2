// @stomp/stompjs 7, unchanged, against the STOMP endpoint of `switchboard serve`: in Node
// (with the `ws` package as globalThis.WebSocket) and in headless Chromium. Connect,
// subscribe to a /topic and to /user/queue/..., send, receive, receipts, heart-beats
// (negotiated 10000,10000, and kept up at 200 ms both ways for longer than three
// intervals), a 100 KiB body with splitLargeFrames, DISCONNECT with its receipt.
//
// SWITCHBOARD=path to the binary (default: ../../target/release/switchboard).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import { waitForPort, launchChromium, timeout } from "./helpers.mjs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { WebSocket } from "ws";
import { Client } from "@stomp/stompjs";

Object.assign(globalThis, { WebSocket });

const here = path.dirname(fileURLToPath(import.meta.url));
const binary = process.env.SWITCHBOARD || path.join(here, "../../target/release/switchboard");
const port = 19080 + Math.floor(Math.random() * 1000);
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "switchboard-stomp-"));
const url = `ws://127.0.0.1:${port}/stomp`;
let server;

before(async () => {
  server = spawn(binary, ["serve", "--listen", `127.0.0.1:${port}`,
    "--set", `store.path=${path.join(dataDir, "store.db")}`,
    "--set", "stomp.heartbeat_send=200ms", "--set", "stomp.heartbeat_receive=200ms"], {
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, RUST_LOG: "warn" },
  });
  await waitForPort(port, 10000);
});

after(() => {
  if (server) server.kill("SIGTERM");
  fs.rmSync(dataDir, { recursive: true, force: true });
});

/** A connected stompjs client for `user` (demo auth: the passcode is the user id). */
function connect(user, options = {}) {
  return new Promise((resolve, reject) => {
    const client = new Client({
      brokerURL: url,
      connectHeaders: { login: user, passcode: user },
      reconnectDelay: 0,
      heartbeatIncoming: 10000,
      heartbeatOutgoing: 10000,
      ...options,
    });
    client.onConnect = (frame) => resolve({ client, frame });
    client.onStompError = (frame) => reject(new Error(frame.headers.message));
    client.onWebSocketError = () => reject(new Error("websocket error"));
    client.activate();
  });
}

/** The next `n` message bodies a subscription gets. */
function collect(client, destination, n) {
  const got = [];
  let done;
  const all = new Promise((r) => { done = r; });
  const sub = client.subscribe(destination, (m) => {
    got.push(m);
    if (got.length === n) done(got);
  });
  return { sub, all };
}

function receipt(client, id) {
  return new Promise((resolve) => client.watchForReceipt(id, resolve));
}

test("stompjs in Node: topic, user queue, receipts, heart-beats, 100 KiB split frames, disconnect", async () => {
  const { client: alice, frame } = await connect("alice");
  assert.equal(frame.headers.version, "1.2");
  assert.equal(frame.headers["heart-beat"], "10000,10000");
  assert.equal(frame.headers["user-name"], "alice");
  const { client: bob } = await connect("bob", { splitLargeFrames: true, maxWebSocketChunkSize: 8 * 1024 });

  const topic = collect(alice, "/topic/chat", 2);
  const mine = collect(alice, "/user/queue/reply", 1);
  // A subscription with a receipt: once it arrives the subscription is in place.
  const subscribed = receipt(bob, "sub-ok");
  const bobTopic = collect(bob, "/topic/chat", 2);
  bob.subscribe("/topic/none", () => {}, { receipt: "sub-ok" });
  await subscribed;

  const sent = receipt(bob, "send-1");
  bob.publish({ destination: "/topic/chat", body: "hello, topic", headers: { receipt: "send-1", "content-type": "text/plain" } });
  await sent;
  const big = "x".repeat(100 * 1024);
  bob.publish({ destination: "/topic/chat", body: big });
  bob.publish({ destination: "/user/alice/queue/reply", body: JSON.stringify({ to: "alice" }), headers: { "content-type": "application/json" } });

  const [m1, m2] = await Promise.race([topic.all, timeout(10000, "topic")]);
  assert.equal(m1.body, "hello, topic");
  assert.equal(m1.headers.destination, "/topic/chat");
  assert.equal(m1.headers["content-type"], "text/plain");
  assert.equal(m2.body.length, big.length);
  assert.equal(m2.body, big);
  const [reply] = await Promise.race([mine.all, timeout(10000, "user queue")]);
  assert.equal(reply.headers.destination, "/user/queue/reply");
  assert.deepEqual(JSON.parse(reply.body), { to: "alice" });
  const bobGot = await Promise.race([bobTopic.all, timeout(10000, "bob's topic")]);
  assert.equal(bobGot.length, 2);

  // DISCONNECT with a receipt: stompjs calls onDisconnect when the RECEIPT arrives.
  const disconnected = new Promise((r) => { alice.onDisconnect = r; });
  await alice.deactivate();
  const f = await Promise.race([disconnected, timeout(5000, "DISCONNECT receipt")]);
  assert.equal(f.command, "RECEIPT");
  await bob.deactivate();
});

test("stompjs in Node: heart-beats at 200 ms keep a quiet session open past three intervals", async () => {
  let closed = false;
  const { client, frame } = await connect("quiet", {
    heartbeatIncoming: 200,
    heartbeatOutgoing: 200,
    onWebSocketClose: () => { closed = true; },
  });
  assert.equal(frame.headers["heart-beat"], "200,200");
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(closed, false, "the session stayed open on heart-beats alone");
  const got = collect(client, "/topic/after-quiet", 1);
  const subscribed = receipt(client, "r");
  client.subscribe("/topic/ignored", () => {}, { receipt: "r" });
  await subscribed;
  client.publish({ destination: "/topic/after-quiet", body: "still here" });
  const [m] = await Promise.race([got.all, timeout(5000, "after quiet")]);
  assert.equal(m.body, "still here");
  await client.deactivate();
});

test("stompjs in headless Chromium: subscribe, send, receive, disconnect", async () => {
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${port}/`);
    await page.addScriptTag({ path: path.join(here, "node_modules/@stomp/stompjs/bundles/stomp.umd.min.js") });
    const result = await page.evaluate(async (brokerURL) => {
      const client = new StompJs.Client({
        brokerURL,
        connectHeaders: { passcode: "browser-user" },
        reconnectDelay: 0,
        heartbeatIncoming: 10000,
        heartbeatOutgoing: 10000,
      });
      const connected = new Promise((r, j) => {
        client.onConnect = r;
        client.onStompError = (f) => j(new Error(f.headers.message));
      });
      client.activate();
      const frame = await connected;
      const got = new Promise((r) => {
        client.subscribe("/user/queue/echo", (m) => r({ body: m.body, destination: m.headers.destination }));
      });
      const subscribed = new Promise((r) => client.watchForReceipt("s", r));
      client.subscribe("/topic/x", () => {}, { receipt: "s" });
      await subscribed;
      client.publish({ destination: "/user/browser-user/queue/echo", body: "from chromium ✓" });
      const message = await got;
      const disconnected = new Promise((r) => { client.onDisconnect = (f) => r(f.command); });
      await client.deactivate();
      return { version: frame.headers.version, message, disconnect: await disconnected };
    }, url);
    assert.deepEqual(result, {
      version: "1.2",
      message: { body: "from chromium ✓", destination: "/user/queue/echo" },
      disconnect: "RECEIPT",
    });
  } finally {
    await browser.close();
  }
});
