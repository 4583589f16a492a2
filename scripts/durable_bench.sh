#!/bin/bash
# Durable delivery benchmark: `switchboard bench chat` (300 users, private messages only)
# against `switchboard serve` with one worker and the store on (fsync always, normal) or
# off, A B A B. Prints one line per run: offered rate, delivered messages/s, server CPU
# share, messages per busy server core, lost, delivery and stored-ACK (SEND_RESPONSE)
# latency, and the store's commit count.
#
#   scripts/durable_bench.sh RATE_PER_USER [ROUNDS] [DURATION] [PIN]
#
# RATE_PER_USER 33.4 is 10,000 messages/s; 300 saturates. PIN=1 pins the server to core
# 0 and the client to core 1 (per-busy-core figures); PIN=0 (default) lets both use the
# machine's two cores ("on this 2-core machine").
set -euo pipefail
RATE=${1:?rate per user}; ROUNDS=${2:-2}; DUR=${3:-5}; PIN=${4:-0}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/switchboard
[ -x "$BIN" ] || cargo build --release --manifest-path "$ROOT/Cargo.toml"
PORT=18090
S=""; C=""
if [ "$PIN" = 1 ]; then S="taskset -c 0"; C="taskset -c 1"; fi
for round in $(seq 1 "$ROUNDS"); do
  for mode in always normal off; do
    DIR=$(mktemp -d)
    if [ "$mode" = off ]; then STORE=(--set store.enabled=false); else STORE=(--set "store.fsync=$mode"); fi
    $S "$BIN" serve --listen 127.0.0.1:$PORT --set engine.workers=1 --set notify_join=false \
      --set "store.path=$DIR/s.db" "${STORE[@]}" >/dev/null 2>"$DIR/log" &
    PID=$!
    sleep 0.5
    $C "$BIN" bench chat --url ws://127.0.0.1:$PORT/ws -u 300 --rate "$RATE" --mix 100,0,0 \
      --duration "$DUR" --warmup 1 --server-pid $PID --json >"$DIR/out.json" 2>/dev/null || true
    COMMITS=$(curl -s 127.0.0.1:$PORT/metrics | awk '/^switchboard_chat_store_commit_seconds_count/ {print $2}')
    kill $PID; wait $PID 2>/dev/null || true
    python3 - "$DIR/out.json" "$mode" "$RATE" "$round" "${COMMITS:-0}" "$DUR" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
mode, rate, rnd, commits, dur = sys.argv[2], float(sys.argv[3]), sys.argv[4], int(sys.argv[5]), float(sys.argv[6])
p = r.get("by_type", {}).get("private", {}); a = r.get("by_type", {}).get("private_ack", {})
print(f"round {rnd} {mode:6} offered {rate*300:>7.0f}/s  delivered {r.get('rate_per_s', 0):>7.0f}/s  "
      f"server busy {r.get('server_busy', 0):.2f}  per busy core {r.get('per_busy_core', 0):>7.0f}  lost {r.get('lost')}  "
      f"delivery p50/p99 {p.get('p50_us', 0)/1000:.2f}/{p.get('p99_us', 0)/1000:.2f} ms  "
      f"stored-ack p50/p99 {a.get('p50_us', 0)/1000:.2f}/{a.get('p99_us', 0)/1000:.2f} ms  commits {commits}")
PY
    rm -rf "$DIR"
  done
done
