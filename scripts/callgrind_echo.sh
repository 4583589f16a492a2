#!/usr/bin/env bash
# Server instructions per echoed message, counted by callgrind: repeatable where wall-clock
# rates are not (the same binary and load give the same count within about 1%).
#
# Usage: scripts/callgrind_echo.sh SERVER_BINARY [bench echo args...]
#   e.g. scripts/callgrind_echo.sh target/release/switchboard -c 100 -k 10 -s 32
# MODE=broadcast runs `bench broadcast` on /broadcast instead and counts per delivery:
#   MODE=broadcast scripts/callgrind_echo.sh BIN --subscribers 10000 -k 16 -s 64
# Runs `SERVER echo --workers 1` under valgrind, loads it for 8 s with this checkout's
# `switchboard bench echo` (release build), and prints total instructions, messages and
# instructions per message (startup and handshakes included; they are a small share).
set -euo pipefail
cd "$(dirname "$0")/.."
server="$1"
shift
port="${PORT:-19401}"
out="$(mktemp -d)"
valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" \
  "$server" echo --listen "127.0.0.1:$port" --workers 1 >/dev/null 2>"$out/server.err" &
vg=$!
trap 'kill "$vg" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null; then
    break
  fi
  sleep 0.2
done
sleep 1
mode="${MODE:-echo}"
path="/"
[ "$mode" = broadcast ] && path="/broadcast"
target/release/switchboard bench "$mode" "$@" --url "ws://127.0.0.1:$port$path" \
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
n = r["received"] if r["mode"] == "broadcast" else r["sent"]
what = "deliveries" if r["mode"] == "broadcast" else "messages"
one = "delivery" if r["mode"] == "broadcast" else "message"
print(f"instructions {ir:,}  {what} {n:,}  per {one} {ir / n:,.0f}")
PY
cp "$out/cg.out" "${CG_KEEP:-/dev/null}" 2>/dev/null || true
rm -rf "$out"
