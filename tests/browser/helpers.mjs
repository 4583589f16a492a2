// Shared by the browser tests: waiting for a spawned switchboard to listen.
import net from "node:net";

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
