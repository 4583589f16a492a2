#!/bin/bash
# STOMP fan-out vs chat channel fan-out, and SockJS xhr-streaming vs WebSocket, A B A B.
set -u
B=${SWITCHBOARD:-target/release/switchboard}
D=${TMPDIR:-/tmp}/sb-stomp; rm -rf "$D"; mkdir -p "$D/data"
taskset -c 0 $B serve --listen 127.0.0.1:18090 --set store.path="$D/data/s.db" --set engine.workers=1 \
  --set notify_join=false --set sockjs.stomp=true --set store.enabled=false > "$D/serve.log" 2>&1 &
SRV=$!
sleep 1
run() { echo "### $*"; taskset -c 1 $B bench "$@" --duration 5 --warmup 1 --server-pid $SRV 2>/dev/null | grep -E "^(rate|latency|integrity|server CPU|mode|transport)"; sleep 6; }
for round in 1 2; do
  run chat --url ws://127.0.0.1:18090/ws -u 1000 --rate 1 --mix 0,0,100
  run stomp --url ws://127.0.0.1:18090/stomp --subscribers 999 --publishers 1 --rate 1000
done
for round in 1 2; do
  run stomp --url ws://127.0.0.1:18090/stomp --subscribers 999 --publishers 1
done
for round in 1 2; do
  run sockjs --url ws://127.0.0.1:18090/stomp --subscribers 100 --rate 2000 --transport xhr-streaming
  run sockjs --url ws://127.0.0.1:18090/stomp --subscribers 100 --rate 2000 --transport websocket
done
kill $SRV
