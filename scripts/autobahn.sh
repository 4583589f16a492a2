#!/usr/bin/env bash
# Runs the Autobahn TestSuite (PyPI runner `kosoku`) against `switchboard echo` with
# permessage-deflate accepted, all 517 cases, and fails on any FAILED, NON-STRICT or
# UNIMPLEMENTED case (see scripts/autobahn_check.py). A second pass runs the 216
# compression cases (12.*, 13.*) again with context takeover both ways, smaller windows
# (12 and 11 bits) and memory level 5: the per-connection compressor and decompressor
# paths, which the default terms never take.
#
# The server compresses every message here (compression_min_size = 0,
# skip_incompressible = false), which the RFC leaves to the sender: kosoku hands the
# 12.x/13.x cases an uncompressed message on a compressing connection as a `str`, which
# their SHA-1 check cannot hash (every such case then ends in ERROR).
#
# Usage: scripts/autobahn.sh [PORT]   (env: KOSOKU=path/to/kosoku, SWITCHBOARD=binary)
# Reports: reports/autobahn/index.html, reports/autobahn-takeover/index.html
set -euo pipefail
cd "$(dirname "$0")/.."

port="${1:-19001}"
kosoku="${KOSOKU:-kosoku}"
bin="${SWITCHBOARD:-target/release/switchboard}"
out=reports/autobahn

if [ -z "${SWITCHBOARD:-}" ]; then
  cargo build --release --bin switchboard
fi

run_pass() {  # OUT EXPECTED_CASES [kosoku case filters...]
  local out="$1" expected="$2"
  shift 2
  RUST_LOG=warn "$bin" echo --config "$out/engine.toml" --listen "127.0.0.1:$port" &
  server=$!
  trap 'kill "$server" 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do
    if python3 -c "import socket,sys; s=socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null; then
      break
    fi
    sleep 0.1
  done
  # kosoku exits 1 for UNIMPLEMENTED cases too; the checker below is the gate.
  "$kosoku" -p 4 -o "$out" "$@" "127.0.0.1:$port" > reports-autobahn.log 2>&1 || true
  tail -n 3 reports-autobahn.log || true
  rm -f reports-autobahn.log
  python3 scripts/autobahn_check.py "$out/index.json" "$expected"
  # The server must still be alive after the suite, then stop cleanly on SIGTERM.
  kill -0 "$server"
  kill -TERM "$server"
  wait "$server"
  trap - EXIT
  echo "autobahn: server exited cleanly after SIGTERM"
}

rm -rf "$out"
mkdir -p "$out"
cat > "$out/engine.toml" <<'TOML'
[deflate]
enabled = true
compression_min_size = 0
skip_incompressible = false
TOML
run_pass "$out" 517

takeover=reports/autobahn-takeover
rm -rf "$takeover"
mkdir -p "$takeover"
cat > "$takeover/engine.toml" <<'TOML'
[deflate]
enabled = true
compression_min_size = 0
skip_incompressible = false
server_context_takeover = true
client_context_takeover = true
server_max_window_bits = 12
client_max_window_bits = 11
mem_level = 5
TOML
run_pass "$takeover" 216 -i '12.*' -i '13.*'
