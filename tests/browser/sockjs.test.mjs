// sockjs-client 1.6, unchanged, against `switchboard serve` with SockJS on the STOMP and
// chat endpoints: @stomp/stompjs over each of the websocket, xhr-streaming, xhr-polling
// and eventsource transports in Node; in headless Chromium with window.WebSocket
// deleted before the clients load (so SockJS must fall back to HTTP), STOMP and the chat
// JSON protocol.
//
// SWITCHBOARD=path to the binary (default: ../../target/release/switchboard).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import SockJS from "sockjs-client";
import { Client } from "@stomp/stompjs";
import { waitForPort, launchChromium, timeout } from "./helpers.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const binary = process.env.SWITCHBOARD || path.join(here, "../../target/release/switchboard");
const port = 21080 + Math.floor(Math.random() * 1000);
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "switchboard-sockjs-"));
const base = `http://127.0.0.1:${port}`;
let server;

before(async () => {
  server = spawn(binary, ["serve", "--listen", `127.0.0.1:${port}`,
    "--set", `store.path=${path.join(dataDir, "store.db")}`,
    "--set", "sockjs.stomp=true", "--set", "sockjs.chat=true",
    "--set", "notify_join=false"], {
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, RUST_LOG: "warn" },
  });
  await waitForPort(port, 10000);
});

after(() => {
  if (server) server.kill("SIGTERM");
  fs.rmSync(dataDir, { recursive: true, force: true });
});

/** A stompjs client over SockJS forced to `transport`; resolves once CONNECTED. */
function connect(user, transport, options = {}) {
  let sock;
  return new Promise((resolve, reject) => {
    const client = new Client({
      webSocketFactory: () => {
        sock = new SockJS(`${base}/stomp`, null, { transports: [transport] });
        return sock;
      },
      connectHeaders: { login: user, passcode: user },
      reconnectDelay: 0,
      heartbeatIncoming: 10000,
      heartbeatOutgoing: 10000,
      ...options,
    });
    client.onConnect = (frame) => resolve({ client, frame, sock });
    client.onStompError = (frame) => reject(new Error(frame.headers.message));
    client.onWebSocketClose = (e) => reject(new Error(`closed ${e.code} ${e.reason}`));
    client.activate();
  });
}

function collect(client, destination, n) {
  const got = [];
  let done;
  const all = new Promise((r) => { done = r; });
  client.subscribe(destination, (m) => {
    got.push(m);
    if (got.length === n) done(got);
  });
  return all;
}

const receipt = (client, id) => new Promise((resolve) => client.watchForReceipt(id, resolve));

for (const transport of ["websocket", "xhr-streaming", "xhr-polling", "eventsource"]) {
  test(`stompjs over sockjs-client (${transport}) in Node: topic, user queue, receipt, 100 KiB, disconnect`, async () => {
    const { client: alice, frame, sock } = await Promise.race([
      connect(`alice-${transport}`, transport),
      timeout(10000, "CONNECTED"),
    ]);
    assert.equal(sock.transport, transport, "the forced transport is the one in use");
    assert.equal(frame.headers.version, "1.2");
    assert.equal(frame.headers["heart-beat"], "10000,10000");
    const { client: bob } = await connect(`bob-${transport}`, transport, {
      splitLargeFrames: true, maxWebSocketChunkSize: 8 * 1024,
    });
    const topic = collect(alice, `/topic/${transport}`, 2);
    const mine = collect(alice, "/user/queue/reply", 1);
    const subscribed = receipt(alice, "subs");
    alice.subscribe("/topic/none", () => {}, { receipt: "subs" });
    await subscribed;

    const sent = receipt(bob, "send-1");
    bob.publish({ destination: `/topic/${transport}`, body: "hello over sockjs", headers: { receipt: "send-1" } });
    await Promise.race([sent, timeout(10000, "receipt")]);
    const big = "y".repeat(100 * 1024);
    bob.publish({ destination: `/topic/${transport}`, body: big });
    bob.publish({ destination: `/user/alice-${transport}/queue/reply`, body: "just you" });

    const [m1, m2] = await Promise.race([topic, timeout(15000, "topic")]);
    assert.equal(m1.body, "hello over sockjs");
    assert.equal(m2.body, big);
    const [r] = await Promise.race([mine, timeout(10000, "user queue")]);
    assert.equal(r.body, "just you");
    assert.equal(r.headers.destination, "/user/queue/reply");

    const disconnected = new Promise((res) => { alice.onDisconnect = res; });
    alice.onWebSocketClose = () => {};
    bob.onWebSocketClose = () => {};
    await alice.deactivate();
    const f = await Promise.race([disconnected, timeout(5000, "DISCONNECT receipt")]);
    assert.equal(f.command, "RECEIPT");
    await bob.deactivate();
  });
}

test("headless Chromium without WebSocket: sockjs-client falls back to HTTP for STOMP and the chat protocol", async () => {
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    // As a proxy that blocks WebSocket would: the page has none.
    await page.addInitScript(() => { delete window.WebSocket; });
    await page.goto(`${base}/healthz`);
    await page.addScriptTag({ path: path.join(here, "node_modules/sockjs-client/dist/sockjs.min.js") });
    await page.addScriptTag({ path: path.join(here, "node_modules/@stomp/stompjs/bundles/stomp.umd.min.js") });
    const result = await page.evaluate(async (base) => {
      const hasWebSocket = typeof window.WebSocket !== "undefined";
      // STOMP.
      let sock;
      const client = new StompJs.Client({
        webSocketFactory: () => { sock = new SockJS(`${base}/stomp`); return sock; },
        connectHeaders: { passcode: "page-user" },
        reconnectDelay: 0,
      });
      const connected = new Promise((r, j) => {
        client.onConnect = r;
        client.onStompError = (f) => j(new Error(f.headers.message));
      });
      client.activate();
      const frame = await connected;
      const got = new Promise((r) => client.subscribe("/user/queue/echo", (m) => r(m.body)));
      const subscribed = new Promise((r) => client.watchForReceipt("s", r));
      client.subscribe("/topic/x", () => {}, { receipt: "s" });
      await subscribed;
      client.publish({ destination: "/user/page-user/queue/echo", body: "from chromium ✓" });
      const stompBody = await got;
      const stompTransport = sock.transport;
      await client.deactivate();

      // The chat JSON protocol: carol sends dave a private message.
      const open = (user) => new Promise((resolve, reject) => {
        const s = new SockJS(`${base}/ws?token=${user}`);
        const inbox = [];
        const waiters = [];
        s.onmessage = (e) => {
          const m = JSON.parse(e.data);
          inbox.push(m);
          waiters.splice(0).forEach((w) => w());
        };
        s.next = async (type) => {
          for (;;) {
            const i = inbox.findIndex((m) => m.type === type);
            if (i >= 0) return inbox.splice(i, 1)[0];
            await new Promise((r) => waiters.push(r));
          }
        };
        s.onopen = () => resolve(s);
        s.onclose = (e) => reject(new Error(`closed ${e.code} ${e.reason}`));
      });
      const carol = await open("carol");
      const dave = await open("dave");
      carol.send(JSON.stringify({ type: "PING", requestId: "p" }));
      const pong = await carol.next("PONG");
      carol.send(JSON.stringify({
        type: "SEND_TO_ONE_REQUEST", requestId: "r1",
        body: { toUser: "dave", msgId: "m1", content: "hi dave ✓" },
      }));
      const resp = await carol.next("SEND_RESPONSE");
      const delivered = await dave.next("SEND_TO_USER_REQUEST");
      const chatTransport = carol.transport;
      carol.onclose = dave.onclose = null;
      carol.close();
      dave.close();
      return {
        hasWebSocket, version: frame.headers.version, stompBody, stompTransport, chatTransport,
        pong: pong.requestId, code: resp.body.code, content: delivered.body.content,
      };
    }, base);
    assert.equal(result.hasWebSocket, false);
    assert.equal(result.version, "1.2");
    assert.equal(result.stompBody, "from chromium ✓");
    assert.notEqual(result.stompTransport, "websocket");
    assert.notEqual(result.chatTransport, "websocket");
    assert.equal(result.pong, "p");
    assert.equal(result.code, 0);
    assert.equal(result.content, "hi dave ✓");
  } finally {
    await browser.close();
  }
});
