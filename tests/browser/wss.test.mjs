// Headless Chromium on wss:// with permessage-deflate: `switchboard serve` with TLS (a
// certificate made for this test with openssl, which Chromium is told to accept with
// --ignore-certificate-errors) and deflate on. The demo page, loaded over https://,
// connects over wss://, Chromium offers permessage-deflate and the server takes it
// (WebSocket.extensions), and two users chat; /metrics counts the deflate sessions.
//
// Needs Debian's chromium (/usr/bin/chromium), openssl, and `npm install` here.
// SWITCHBOARD=path to the binary (default: ../../target/release/switchboard).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { waitForPort, launchChromium } from "./helpers.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const binary = process.env.SWITCHBOARD || path.join(here, "../../target/release/switchboard");
const port = 19080 + Math.floor(Math.random() * 1000);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "switchboard-wss-"));
const origin = `https://localhost:${port}`;
let server;
let browser;

before(async () => {
  const cert = path.join(dir, "cert.pem");
  const key = path.join(dir, "key.pem");
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
    "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
    "-keyout", key, "-out", cert], { stdio: "ignore" });
  server = spawn(binary, ["serve", "--listen", `127.0.0.1:${port}`,
    "--set", `tls.cert=${cert}`, "--set", `tls.key=${key}`,
    "--set", "engine.deflate.enabled=true",
    "--set", `store.path=${path.join(dir, "store.db")}`], {
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, RUST_LOG: "warn" },
  });
  await waitForPort(port, 10000);
  browser = await launchChromium(["--ignore-certificate-errors"]);
});

after(async () => {
  if (browser) await browser.close();
  if (server) server.kill("SIGTERM");
  fs.rmSync(dir, { recursive: true, force: true });
});

async function openAs(user) {
  const page = await browser.newPage();
  await page.goto(`${origin}/`);
  assert.equal(await page.inputValue("#url"), `wss://localhost:${port}/ws`);
  await page.fill("#token", user);
  await page.click("#connect");
  await page.waitForFunction(() => document.getElementById("status").textContent === "connected");
  await page.waitForFunction(() => document.getElementById("log").textContent.includes("AUTH_RESPONSE"));
  return page;
}

function metrics() {
  return new Promise((resolve, reject) => {
    https.get(`${origin}/metrics`, { rejectUnauthorized: false }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve(body));
    }).on("error", reject);
  });
}

test("Chromium negotiates permessage-deflate over wss:// and chats through the demo page", async () => {
  const alice = await openAs("alice");
  const bob = await openAs("bob");

  const extensions = await alice.evaluate((url) => new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.onopen = () => { resolve(ws.extensions); ws.close(); };
    ws.onerror = () => reject(new Error("wss failed"));
  }), `wss://localhost:${port}/ws?accessToken=probe`);
  assert.match(extensions, /^permessage-deflate/);

  const long = "deflate me ".repeat(500);
  await alice.fill("#toUser", "bob");
  await alice.fill("#privateText", long);
  await alice.click("#sendPrivate");
  await bob.waitForFunction((n) => document.getElementById("log").textContent.includes(n),
    long.slice(0, 200), { timeout: 10000 });
  await bob.fill("#groupText", "hello over tls");
  await bob.click("#sendGroup");
  await alice.waitForFunction(() => document.getElementById("log").textContent.includes('"content":"hello over tls"'),
    null, { timeout: 10000 });

  const text = await metrics();
  const sessions = Number(/^switchboard_deflate_sessions_total (\d+)/m.exec(text)?.[1]);
  assert.ok(sessions >= 3, `deflate sessions: ${sessions}\n${text}`);
});
