#!/usr/bin/env bash
# Server instructions per operation, counted by callgrind: repeatable where wall-clock
# rates are not (the same binary and load give the same count within about 1%). Only
# user space is counted, not the kernel's share.
#
# Usage: [MODE=echo|broadcast|chat] scripts/callgrind.sh SERVER_BINARY [bench args...]
#   scripts/callgrind.sh target/release/switchboard -c 100 -k 10 -s 32
#   MODE=broadcast scripts/callgrind.sh target/release/switchboard --subscribers 2000 -k 16 -s 64
#   MODE=chat scripts/callgrind.sh target/release/switchboard -u 300 --rate 2 --mix 99,1,0
# Runs the server with one worker under valgrind (`echo` for echo and broadcast, `serve`
# with demo auth for chat), loads it for 8 s with this checkout's `switchboard bench MODE`
# (release build), and prints total instructions and instructions per message, delivery
# or chat message (startup and handshakes included; they are a small share).
# CG_KEEP=FILE keeps the callgrind profile for callgrind_annotate.
# TLS=1: the server speaks TLS (a CA and certificate made here with openssl) and the bench
# connects with wss://. DEFLATE=1: permessage-deflate on both sides (echo/broadcast).
# DURATION=S measures for S seconds instead of 8: two runs of different lengths, their
# difference over the difference in messages, cancel the fixed costs (startup, handshakes).
set -euo pipefail
cd "$(dirname "$0")/.."
server="$1"
shift
mode="${MODE:-echo}"
port="${PORT:-19401}"
out="$(mktemp -d)"
case "$mode" in
  chat) serve=(serve --listen "127.0.0.1:$port" --set engine.workers=1); path=/ws ;;
  broadcast) serve=(echo --listen "127.0.0.1:$port" --workers 1); path=/broadcast ;;
  *) serve=(echo --listen "127.0.0.1:$port" --workers 1); path=/ ;;
esac
scheme=ws
host=127.0.0.1
client=()
if [ -n "${TLS:-}" ]; then
  ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
  openssl req -x509 "${ec[@]}" -days 2 -subj /CN=cg-ca -keyout "$out/ca.key" -out "$out/ca.pem" 2>/dev/null
  openssl req "${ec[@]}" -subj /CN=localhost -keyout "$out/key.pem" -out "$out/leaf.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$out/ext"
  openssl x509 -req -in "$out/leaf.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" -CAcreateserial \
    -days 2 -extfile "$out/ext" -out "$out/cert.pem" 2>/dev/null
  if [ "$mode" = chat ]; then
    serve+=(--set "tls.cert=$out/cert.pem" --set "tls.key=$out/key.pem")
  else
    serve+=(--tls-cert "$out/cert.pem" --tls-key "$out/key.pem")
  fi
  scheme=wss
  host=localhost
  client+=(--ca "$out/ca.pem")
fi
if [ -n "${DEFLATE:-}" ]; then
  serve+=(--deflate)
  client+=(--deflate)
fi
RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" \
  "$server" "${serve[@]}" >/dev/null 2>"$out/server.err" &
vg=$!
trap 'kill "$vg" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null; then
    break
  fi
  sleep 0.2
done
sleep 1
target/release/switchboard bench "$mode" "$@" "${client[@]}" --url "$scheme://$host:$port$path" \
  --warmup 0.5 --duration "${DURATION:-8}" --json >"$out/bench.json" 2>/dev/null
kill -TERM "$vg"
wait "$vg" || true
trap - EXIT
python3 - "$out" <<'PY'
import json, re, sys
d = sys.argv[1]
ir = next(int(m.group(1)) for line in open(f"{d}/cg.out")
          if (m := re.match(r"(?:summary|totals): (\d+)", line)))
r = json.load(open(f"{d}/bench.json"))
if r["mode"] == "chat":
    n, frames = r["sent"], r["received"]
    print(f"instructions {ir:,}  chat messages {n:,}  deliveries {frames:,}  lost {r['lost']}  "
          f"per message {ir / n:,.0f}  per delivery {ir / max(frames, 1):,.0f}")
elif r["mode"] == "broadcast":
    n = r["received"]
    print(f"instructions {ir:,}  deliveries {n:,}  per delivery {ir / n:,.0f}")
else:
    n = r["sent"]
    print(f"instructions {ir:,}  messages {n:,}  per message {ir / n:,.0f}")
PY
if [ -n "${CG_KEEP:-}" ]; then cp "$out/cg.out" "$CG_KEEP"; fi
rm -rf "$out"
