// Shared by the browser tests: waiting for a spawned switchboard to listen, launching
// Debian's chromium headless, and timing a promise out.
import net from "node:net";
import { chromium } from "playwright-core";

/** Resolves once 127.0.0.1:`p` accepts a connection; rejects after `ms`. */
export function waitForPort(p, ms) {
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

/** Debian's chromium, headless, with the flags the project's tests use (and `extra`). */
export function launchChromium(extra = []) {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run", ...extra],
  });
}

/** A promise that rejects after `ms`, naming `what`: race it against one that should not hang. */
export const timeout = (ms, what) =>
  new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms));
