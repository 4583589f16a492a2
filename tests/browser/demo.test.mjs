// Two users in two headless Chromium pages chat through the demo page of
// `switchboard serve`: a private message and a group message must both arrive.
//
// Needs Debian's chromium (/usr/bin/chromium) and `npm install` here (playwright-core).
// SWITCHBOARD=path to the binary (default: ../../target/release/switchboard).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const binary = process.env.SWITCHBOARD || path.join(here, "../../target/release/switchboard");
const port = 18080 + Math.floor(Math.random() * 1000);
let server;
let browser;

function waitForPort(p, ms) {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = net.connect(p, "127.0.0.1");
      s.on("connect", () => { s.destroy(); resolve(); });
      s.on("error", () => {
        if (Date.now() > deadline) reject(new Error("server did not start"));
        else setTimeout(attempt, 100);
      });
    };
    attempt();
  });
}

before(async () => {
  server = spawn(binary, ["serve", "--listen", `127.0.0.1:${port}`], {
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, RUST_LOG: "warn" },
  });
  await waitForPort(port, 10000);
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
});

after(async () => {
  if (browser) await browser.close();
  if (server) server.kill("SIGTERM");
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
  assert.match(aliceLog, /"content":"hello everyone","fromUser":"bob"[^\n]*"type":"SEND_TO_USER_REQUEST"/);
  await alice.screenshot({ path: path.join(here, "alice.png") });
});
