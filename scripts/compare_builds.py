#!/usr/bin/env python3
"""Side-by-side benchmark of two switchboard builds (before and after a change).

Runs each scenario against each build in turn, A B A B..., with the server pinned to
core 0 with one worker and the load generator on core 1 (`taskset`). The load generator
is the *after* build's `switchboard bench` for the WebSocket scenarios (the same client
for both servers) and `wrk` (Debian package) for the push API. Prints a table of
medians, the after/before ratio, and the server's CPU time per operation.

Usage:
  scripts/compare_builds.py --before OLD_BINARY [--after target/release/switchboard]
                            [--rounds N] [--duration S] [--only NAME ...] [--json FILE]
"""
import argparse
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time

from compare import cpu_seconds, summarize  # scripts/compare.py: the same bookkeeping

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT = 19301
API_KEY = "bench-key"

# name: (kind, args, result key, unit)
SCENARIOS = {
    "echo_100x10x32B": ("ws", ["echo", "-c", "100", "-k", "10", "-s", "32"], "rate_per_s", "msg/s"),
    "echo_10x64KiB": ("ws", ["echo", "-c", "10", "-k", "4", "-s", "65536"], "mb_per_s", "MB/s"),
    "broadcast_1000x64B": (
        "ws",
        ["broadcast", "--subscribers", "1000", "--publishers", "1", "-k", "16", "-s", "64"],
        "rate_per_s",
        "deliveries/s",
    ),
    "broadcast_10000x64B": (
        "ws",
        ["broadcast", "--subscribers", "10000", "--publishers", "1", "-k", "16", "-s", "64"],
        "rate_per_s",
        "deliveries/s",
    ),
    "connect": ("ws", ["connect", "-c", "50"], "rate_per_s", "handshakes/s"),
    "idle_memory_10000": ("ws", ["hold", "-c", "10000"], "server_bytes_per_conn", "bytes/conn"),
    "push_keepalive": ("push", [], "rate_per_s", "requests/s"),
    "push_close": ("push", ["-H", "Connection: close"], "rate_per_s", "requests/s"),
}

WRK_LUA = f"""
wrk.method = "POST"
wrk.body = '{{"to": {{"userId": "nobody"}}, "type": "NOTICE", "body": {{"n": 1}}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {API_KEY}"
"""


def start(binary, kind):
    if kind == "push":
        cmd = [binary, "serve", "--listen", f"127.0.0.1:{PORT}", "--set", "engine.workers=1",
               "--set", f"api.key={API_KEY}"]
    else:
        cmd = [binary, "echo", "--listen", f"127.0.0.1:{PORT}", "--workers", "1"]
    p = subprocess.Popen(
        ["taskset", "-c", "0"] + cmd,
        env={**os.environ, "RUST_LOG": "warn"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", PORT), 0.2).close()
            return p
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise RuntimeError(f"{binary} did not start")


def run_ws(client, args, key, duration, pid):
    path = "/broadcast" if args[0] == "broadcast" else "/"
    cmd = ["taskset", "-c", "1", client, "bench"] + args + [
        "--url", f"ws://127.0.0.1:{PORT}{path}",
        "--duration", str(duration if args[0] != "hold" else 2),
        "--warmup", "1",
        "--json",
    ]
    if args[0] == "hold":
        cmd += ["--server-pid", str(pid)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if not out.stdout.strip():
        raise RuntimeError(f"bench printed nothing: {out.stderr[-500:]}")
    result = json.loads(out.stdout)
    result["exit"] = out.returncode
    result["value"] = result.get(key, 0)
    return result


def run_push(args, duration, lua):
    cmd = ["taskset", "-c", "1", "wrk", "-t1", "-c50", f"-d{int(duration)}s", "-s", lua] + args + [
        f"http://127.0.0.1:{PORT}/api/v1/send"
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    total = re.search(r"(\d+) requests in", out.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    return {
        "value": float(rate.group(1)) if rate else 0.0,
        "completed": int(total.group(1)) if total else 0,
        "exit": out.returncode if not errors else 1,
        "wrk": out.stdout,
    }


def run_once(binary, client, name, duration, lua):
    kind, args, key, _ = SCENARIOS[name]
    proc = start(binary, kind)
    try:
        time.sleep(0.3)
        cpu0 = cpu_seconds(proc.pid)
        if kind == "push":
            result = run_push(args, duration, lua)
        else:
            result = run_ws(client, args, key, duration, proc.pid)
        result["server_cpu_s"] = cpu_seconds(proc.pid) - cpu0
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", default=os.path.join(ROOT, "target/release/switchboard"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--json")
    a = ap.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    builds = {"before": a.before, "after": a.after}
    names = a.only or list(SCENARIOS)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_LUA)
        lua = f.name
    results = {n: {b: [] for b in builds} for n in names}
    for name in names:
        for r in range(a.rounds):
            for build, binary in builds.items():
                res = run_once(binary, a.after, name, a.duration, lua)
                results[name][build].append(res)
                print(
                    f"{name:<20} round {r + 1} {build:<6} {res['value']:>14,.0f} {SCENARIOS[name][3]}"
                    f"  exit {res['exit']}  lost {res.get('lost')}  server CPU {res['server_cpu_s']:.2f}s",
                    file=sys.stderr,
                    flush=True,
                )
    os.unlink(lua)
    print()
    print("| scenario | before | after | after / before | server CPU µs per op (before / after) | clean (before / after) |")
    print("|---|---|---|---|---|---|")
    for name in names:
        unit = SCENARIOS[name][3]
        med, per_op, clean = {}, {}, {}
        for build, runs in results[name].items():
            med[build], per_op[build], clean[build] = summarize(runs)
        ratio = med["after"] / med["before"] if med["before"] else float("inf")
        print(
            f"| {name} | {med['before']:,.0f} {unit} | {med['after']:,.0f} {unit} | {ratio:.2f}× | "
            f"{per_op['before']:.2f} / {per_op['after']:.2f} | {clean['before']} / {clean['after']} |"
        )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
