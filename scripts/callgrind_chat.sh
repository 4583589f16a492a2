#!/usr/bin/env bash
# Server instructions per chat message, counted by callgrind: repeatable where wall-clock
# rates are not. User-space work only (the kernel's share is not counted).
#
# Usage: scripts/callgrind_chat.sh SERVER_BINARY [bench chat args...]
#   e.g. scripts/callgrind_chat.sh target/release/switchboard -u 300 --rate 2 --mix 99,1,0
# Runs `SERVER serve` (demo auth, one worker) under valgrind, loads it for 8 s with this
# checkout's `switchboard bench chat` (release build), and prints total instructions,
# chat messages sent and instructions per message (startup and the 300 handshakes
# included; they are a small share at these counts).
set -euo pipefail
cd "$(dirname "$0")/.."
server="$1"
shift
port="${PORT:-19402}"
out="$(mktemp -d)"
RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" \
  "$server" serve --listen "127.0.0.1:$port" --set engine.workers=1 >/dev/null 2>"$out/server.err" &
vg=$!
trap 'kill "$vg" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null; then
    break
  fi
  sleep 0.2
done
sleep 1
target/release/switchboard bench chat "$@" --url "ws://127.0.0.1:$port/ws" \
  --warmup 0.5 --duration 8 --json >"$out/bench.json" 2>/dev/null
kill -TERM "$vg"
wait "$vg" || true
trap - EXIT
python3 - "$out" <<'PY'
import json, re, sys
d = sys.argv[1]
ir = next(int(m.group(1)) for line in open(f"{d}/cg.out")
          if (m := re.match(r"(?:summary|totals): (\d+)", line)))
r = json.load(open(f"{d}/bench.json"))
n, frames = r["sent"], r["received"]
print(f"instructions {ir:,}  chat messages {n:,}  deliveries {frames:,}  lost {r['lost']}  "
      f"per message {ir / n:,.0f}  per delivery {ir / max(frames, 1):,.0f}")
PY
cp "$out/cg.out" "${CG_KEEP:-/dev/null}" 2>/dev/null || true
rm -rf "$out"
