// switchboard.js: the browser client of a Switchboard chat node, served by the node at
// /switchboard.js. No build step, no dependencies.
//
//   const sb = new Switchboard({ url: "ws://host/ws", token: "alice" });
//   sb.on("message", (m) => ...);          // every message the node sends, deduplicated
//   sb.on("state", (s) => ...);            // "connecting" | "open" | "reconnecting" | "closed"
//   sb.connect();
//   const reply = await sb.sendTo("bob", { text: "hi" });   // resolves with SEND_RESPONSE
//
// What it does for you:
// - requestId request/reply as promises (`request(type, body)`), with a timeout;
// - heartbeat: PING every `heartbeatMs`; a connection silent for twice that is dropped;
// - reconnect with exponential backoff and jitter; sends made while disconnected wait in
//   an outbox and go out, in order, once the session is authenticated again;
// - stored messages (those with `seq`): resume with lastSeq/epoch at login (kept in
//   localStorage per url and token), drop repeats by seq, pull on a gap, when the login
//   replay says hasMore, and every `pullEveryMs` in case a push was lost; ACK
//   cumulatively every `ackEveryMs`;
// - channels and messages to everyone (channel "*"): after a reconnect, subscribe again
//   with the last number seen, so the node replays what was missed meanwhile;
// - a new epoch (the node's history was reset) restarts the numbering.
(function (global) {
  "use strict";

  class Switchboard {
    constructor(opts) {
      this.url = opts.url;
      this.token = opts.token || "";
      this.heartbeatMs = opts.heartbeatMs || 20000;
      this.ackEveryMs = opts.ackEveryMs || 1000;
      this.pullEveryMs = opts.pullEveryMs || 30000;
      this.requestTimeoutMs = opts.requestTimeoutMs || 15000;
      this.maxBackoffMs = opts.maxBackoffMs || 15000;
      this.storageKey = "switchboard:" + this.url + ":" + this.token;
      this.handlers = { message: [], state: [], frame: [], auth: [] };
      this.pending = new Map(); // requestId -> {resolve, reject, timer, text}
      this.outbox = []; // requestIds waiting for an authenticated session
      this.nextId = 1;
      this.attempt = 0;
      this.ws = null;
      this.authed = false;
      this.stopped = true;
      this.seen = new Set(); // numbers above lastSeq already delivered
      this.channels = new Map(); // channel ("*": messages to everyone) -> {subscribed, seen: Set, last}
      const saved = this._load();
      this.lastSeq = saved.lastSeq || 0;
      this.epoch = saved.epoch || "";
      this.acked = this.lastSeq;
      this.state = "closed";
    }

    on(event, fn) {
      (this.handlers[event] || (this.handlers[event] = [])).push(fn);
      return this;
    }

    _emit(event, arg) {
      for (const fn of this.handlers[event] || []) {
        try { fn(arg); } catch (e) { console.error(e); }
      }
    }

    _setState(s) {
      if (this.state !== s) {
        this.state = s;
        this._emit("state", s);
      }
    }

    _load() {
      try { return JSON.parse(global.localStorage.getItem(this.storageKey)) || {}; } catch (e) { return {}; }
    }

    _save() {
      try {
        global.localStorage.setItem(this.storageKey, JSON.stringify({ lastSeq: this.lastSeq, epoch: this.epoch }));
      } catch (e) { /* private mode: resume from the node's cursor instead */ }
    }

    connect() {
      this.stopped = false;
      this._open();
    }

    close() {
      this.stopped = true;
      this._clearTimers();
      if (this.ws) this.ws.close(1000, "bye");
      this._setState("closed");
    }

    _open() {
      this._setState(this.attempt === 0 ? "connecting" : "reconnecting");
      let q = "?accessToken=" + encodeURIComponent(this.token);
      if (this.epoch) q += "&lastSeq=" + this.lastSeq + "&epoch=" + encodeURIComponent(this.epoch);
      const ws = new WebSocket(this.url + q);
      this.ws = ws;
      this.authed = false;
      ws.onopen = () => { this.lastHeard = Date.now(); };
      ws.onmessage = (e) => { if (this.ws === ws) this._onText(e.data); };
      ws.onclose = () => { if (this.ws === ws) this._onClose(); };
      ws.onerror = () => {};
    }

    _onClose() {
      this.ws = null;
      this.authed = false;
      this._clearTimers();
      // Requests in flight are sent again on the next session (a msgId makes a repeat
      // harmless: the node does not deliver it twice within its dedup window, and
      // receivers drop repeats by seq or msgId).
      const again = [];
      for (const [id, p] of this.pending) {
        if (p.sent && p.resend) { p.sent = false; again.push(id); }
      }
      this.outbox = again.concat(this.outbox);
      if (this.stopped) { this._setState("closed"); return; }
      this._setState("reconnecting");
      const backoff = Math.min(this.maxBackoffMs, 250 * Math.pow(2, this.attempt++));
      this.retryTimer = setTimeout(() => this._open(), backoff / 2 + Math.random() * backoff / 2);
    }

    _clearTimers() {
      clearInterval(this.heartbeatTimer);
      clearInterval(this.ackTimer);
      clearInterval(this.pullTimer);
      clearTimeout(this.retryTimer);
      clearTimeout(this.gapTimer);
    }

    _onText(text) {
      this.lastHeard = Date.now();
      this._emit("frame", { dir: "in", text });
      let m;
      try { m = JSON.parse(text); } catch (e) { return; }
      if (m.type === "AUTH_RESPONSE" && !this.authed) return this._onAuth(m);
      if (m.requestId && this.pending.has(m.requestId)) {
        const p = this.pending.get(m.requestId);
        this.pending.delete(m.requestId);
        clearTimeout(p.timer);
        p.resolve(m);
      }
      if (m.type === "PULL_RESPONSE" && m.body && m.body.code === 0) {
        for (const inner of m.body.messages || []) this._deliver(inner);
        if (m.body.hasMore) this.pull();
        return;
      }
      this._deliver(m);
    }

    _onAuth(m) {
      const b = m.body || {};
      if (b.code !== 0) {
        this._emit("auth", m);
        this.stopped = true; // a refused token will not get better by retrying
        if (this.ws) this.ws.close(1000, "auth refused");
        return;
      }
      this.authed = true;
      this.attempt = 0;
      if (b.epoch !== undefined && b.epoch !== this.epoch) {
        // Another history (a new database): our numbers mean nothing there.
        this.epoch = b.epoch;
        this.lastSeq = 0;
        this.acked = 0;
        this.seen.clear();
        this._save();
      }
      this.sessionId = b.sessionId;
      this.userId = b.userId;
      this._emit("auth", m);
      this._setState("open");
      this.heartbeatTimer = setInterval(() => this._heartbeat(), this.heartbeatMs);
      this.ackTimer = setInterval(() => this._ack(), this.ackEveryMs);
      if (b.epoch !== undefined) this.pullTimer = setInterval(() => this.pull(), this.pullEveryMs);
      if (b.hasMore) this.pull();
      this._resubscribe();
      const out = this.outbox;
      this.outbox = [];
      for (const id of out) this._flush(id);
    }

    /** After a reconnect: subscribe again, recovering what each channel's history holds
     * after the last number seen (and the same for messages to everyone, "*"). */
    _resubscribe() {
      for (const [channel, c] of this.channels) {
        if (!c.subscribed && !c.last) continue;
        const body = { channel };
        if (c.last) { body.sinceSeq = c.last; body.epoch = this.epoch; }
        this._write(JSON.stringify({ type: "SUBSCRIBE_REQUEST", body }));
      }
    }

    _channel(name) {
      if (!this.channels.has(name)) this.channels.set(name, { subscribed: false, seen: new Set(), last: 0 });
      return this.channels.get(name);
    }

    _deliver(m) {
      const seq = m.body && typeof m.body.seq === "number" ? m.body.seq : null;
      if (seq !== null && typeof m.body.channel === "string") {
        // A channel's (or everyone's) history: drop repeats of a replay.
        const c = this._channel(m.body.channel);
        if (c.seen.has(seq)) return;
        c.seen.add(seq);
        if (c.seen.size > 1000) c.seen.delete(c.seen.values().next().value);
        c.last = Math.max(c.last, seq);
      } else if (seq !== null && this.epoch) {
        if (seq <= this.lastSeq || this.seen.has(seq)) return; // a repeat
        this.seen.add(seq);
        while (this.seen.has(this.lastSeq + 1)) {
          this.seen.delete(this.lastSeq + 1);
          this.lastSeq++;
        }
        this._save();
        if (this.seen.size && !this.gapTimer) {
          // A number is missing below this one: pull it if it does not arrive soon.
          this.gapTimer = setTimeout(() => { this.gapTimer = null; if (this.seen.size) this.pull(); }, 500);
        }
      }
      this._emit("message", m);
    }

    _heartbeat() {
      if (Date.now() - this.lastHeard > 2 * this.heartbeatMs) {
        if (this.ws) this.ws.close(4000, "heartbeat lost");
        return;
      }
      this._write(JSON.stringify({ type: "PING", body: {} }));
    }

    _ack() {
      if (this.authed && this.lastSeq > this.acked) {
        this.acked = this.lastSeq;
        this._write(JSON.stringify({ type: "ACK_REQUEST", body: { seq: this.lastSeq } }));
      }
    }

    /** Asks for stored messages after the last one held in order. */
    pull() {
      if (!this.authed || !this.epoch) return;
      this._write(JSON.stringify({ type: "PULL_REQUEST", body: { sinceSeq: this.lastSeq, limit: 200 } }));
    }

    _write(text) {
      if (this.ws && this.ws.readyState === 1 && this.authed) {
        this.ws.send(text);
        this._emit("frame", { dir: "out", text });
        return true;
      }
      return false;
    }

    /**
     * Sends `{type, body, requestId}` and resolves with the reply carrying the same
     * requestId. While disconnected it waits in the outbox.
     */
    request(type, body, resend) {
      const requestId = "r" + (this.nextId++) + "-" + Date.now().toString(36);
      const text = JSON.stringify({ type, body, requestId });
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          this.pending.delete(requestId);
          reject(new Error(type + " timed out"));
        }, this.requestTimeoutMs + (this.authed ? 0 : 60000));
        this.pending.set(requestId, { resolve, reject, timer, text, resend: resend !== false, sent: false });
        if (this.authed) this._flush(requestId);
        else this.outbox.push(requestId);
      });
    }

    _flush(requestId) {
      const p = this.pending.get(requestId);
      if (!p || p.sent) return;
      if (this._write(p.text)) p.sent = true;
      else this.outbox.push(requestId);
    }

    static msgId() {
      return (global.crypto && global.crypto.randomUUID) ? global.crypto.randomUUID()
        : Date.now().toString(36) + Math.random().toString(36).slice(2);
    }

    /** A private message; resolves with SEND_RESPONSE (code 0: stored). */
    sendTo(user, content, msgId) {
      return this.request("SEND_TO_ONE_REQUEST", { toUser: user, msgId: msgId || Switchboard.msgId(), content });
    }

    sendAll(content, msgId) {
      return this.request("SEND_TO_ALL_REQUEST", { msgId: msgId || Switchboard.msgId(), content });
    }

    subscribe(channel) {
      this._channel(channel).subscribed = true;
      return this.request("SUBSCRIBE_REQUEST", { channel });
    }

    sendChannel(channel, content, msgId) {
      return this.request("SEND_TO_CHANNEL_REQUEST", { channel, msgId: msgId || Switchboard.msgId(), content });
    }
  }

  global.Switchboard = Switchboard;
})(typeof window !== "undefined" ? window : globalThis);
