// Two users in two headless Chromium pages chat through the demo page of
// `switchboard serve` (which uses the node's /switchboard.js client): a private message
// and a group message must both arrive; and when the node is killed (SIGKILL) and
// restarted on the same database mid-conversation, both pages reconnect by themselves
// and show every message once, in order, including one sent while the node was down.
//
// Needs Debian's chromium (/usr/bin/chromium) and `npm install` here (playwright-core).
// SWITCHBOARD=path to the binary (default: ../../target/release/switchboard).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import { waitForPort, launchChromium } from "./helpers.mjs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const binary = process.env.SWITCHBOARD || path.join(here, "../../target/release/switchboard");
const port = 18080 + Math.floor(Math.random() * 1000);
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "switchboard-browser-"));
let server;
let browser;

function startServer() {
  server = spawn(binary, ["serve", "--listen", `127.0.0.1:${port}`,
    "--set", `store.path=${path.join(dataDir, "store.db")}`], {
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, RUST_LOG: "warn" },
  });
  return waitForPort(port, 10000);
}

before(async () => {
  await startServer();
  browser = await launchChromium();
});

after(async () => {
  if (browser) await browser.close();
  if (server) server.kill("SIGTERM");
  fs.rmSync(dataDir, { recursive: true, force: true });
});

async function openAs(user) {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${port}/`);
  await page.fill("#token", user);
  await page.click("#connect");
  await page.waitForFunction(() => document.getElementById("status").textContent === "connected");
  await page.waitForFunction(() => document.getElementById("log").textContent.includes("AUTH_RESPONSE"));
  return page;
}

async function waitForLog(page, needle) {
  await page.waitForFunction(
    (n) => document.getElementById("log").textContent.includes(n),
    needle,
    { timeout: 10000 },
  );
}

test("two users exchange a private and a group message through the demo page", async () => {
  const alice = await openAs("alice");
  const bob = await openAs("bob");

  await alice.fill("#toUser", "bob");
  await alice.fill("#privateText", "hello bob, privately");
  await alice.click("#sendPrivate");
  await waitForLog(bob, '"content":"hello bob, privately"');
  await waitForLog(alice, '"type":"SEND_RESPONSE"');

  await bob.fill("#groupText", "hello everyone");
  await bob.click("#sendGroup");
  await waitForLog(alice, '"content":"hello everyone"');
  await waitForLog(bob, '"content":"hello everyone"');

  // Each message arrived as SEND_TO_USER_REQUEST from the other user.
  const bobLog = await bob.textContent("#log");
  assert.match(bobLog, /"content":"hello bob, privately","fromUser":"alice"[^\n]*"type":"SEND_TO_USER_REQUEST"/);
  const aliceLog = await alice.textContent("#log");
  assert.match(aliceLog, /"content":"hello everyone",[^\n]*"fromUser":"bob"[^\n]*"type":"SEND_TO_USER_REQUEST"/);
  await alice.screenshot({ path: path.join(here, "alice.png") });
});

/** The texts of the conversation shown, in order. */
async function shown(page, peer) {
  return page.evaluate((p) => {
    for (const b of document.querySelectorAll("#conversations button")) {
      if (b.textContent === p) b.click();
    }
    return [...document.querySelectorAll("#messages .msg .text")].map((e) => e.textContent);
  }, peer);
}

async function waitShown(page, peer, expected) {
  const deadline = Date.now() + 20000;
  let got = [];
  while (Date.now() < deadline) {
    got = await shown(page, peer);
    if (got.length >= expected.length) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(got, expected, `${peer}'s conversation`);
}

async function say(page, to, text) {
  await page.fill("#toUser", to);
  await page.fill("#privateText", text);
  await page.press("#privateText", "Enter");
}

test("both pages reconnect after the node is killed and show every message once, in order", async () => {
  const carol = await openAs("carol");
  const dave = await openAs("dave");
  await say(carol, "dave", "c1");
  await waitShown(dave, "carol", ["c1"]);
  await say(dave, "carol", "d1");
  await waitShown(carol, "dave", ["c1", "d1"]);
  await say(carol, "dave", "c2");
  await waitShown(dave, "carol", ["c1", "d1", "c2"]);
  // Stored ✓ is shown once the node has committed it.
  await carol.waitForFunction(() => [...document.querySelectorAll("#messages .msg .state")]
    .every((e) => e.textContent.startsWith("stored")));

  server.kill("SIGKILL");
  await carol.waitForFunction(() => !document.getElementById("banner").hidden, null, { timeout: 10000 });
  await dave.waitForFunction(() => !document.getElementById("banner").hidden, null, { timeout: 10000 });
  // Sent while the node is down: it waits in the client's outbox.
  await say(carol, "dave", "c3");
  await startServer();

  await carol.waitForFunction(() => document.getElementById("status").textContent === "connected", null, { timeout: 20000 });
  await dave.waitForFunction(() => document.getElementById("status").textContent === "connected", null, { timeout: 20000 });
  await waitShown(dave, "carol", ["c1", "d1", "c2", "c3"]);
  await say(dave, "carol", "d2");
  await waitShown(carol, "dave", ["c1", "d1", "c2", "c3", "d2"]);
  await waitShown(dave, "carol", ["c1", "d1", "c2", "c3", "d2"]);
  assert.equal(await carol.isHidden("#banner"), true);
  await dave.screenshot({ path: path.join(here, "dave.png") });
});
