#!/usr/bin/env python3
"""Side-by-side benchmark: `switchboard echo` against a tokio-tungstenite server.

Builds both (release), then for each scenario runs the bench client against each server
in turn, A B A B..., with the server pinned to core 0 and the client to core 1
(`taskset`), one server thread each. Prints a table of medians and ratios, and the
server's CPU time per message (meaningful even when the client is the bottleneck).

Usage: scripts/compare.py [--rounds N] [--duration S] [--only NAME ...] [--json FILE]
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SB = os.path.join(ROOT, "target/release/switchboard")
TT = os.path.join(ROOT, "target/release/examples/tokio_tungstenite_server")
PORT = {"switchboard": 19201, "tokio-tungstenite": 19202}


def build():
    subprocess.run(
        ["cargo", "build", "--release", "--bin", "switchboard", "--example", "tokio_tungstenite_server"],
        cwd=ROOT,
        check=True,
    )


def start(server):
    port = PORT[server]
    if server == "switchboard":
        cmd = [SB, "echo", "--listen", f"127.0.0.1:{port}", "--workers", "1"]
    else:
        cmd = [TT, f"127.0.0.1:{port}", "1"]
    p = subprocess.Popen(
        ["taskset", "-c", "0"] + cmd,
        env={**os.environ, "RUST_LOG": "warn"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return p
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{server} did not start")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(") ", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def summarize(runs):
    """Median value, median server CPU µs per completed operation, and "ok" if every run
    exited 0 (else "ERRORS")."""
    value = statistics.median(r["value"] for r in runs)
    ops = [r.get("completed", 0) for r in runs]
    cpu = [r["server_cpu_s"] for r in runs]
    per_op = statistics.median(c / m * 1e6 for c, m in zip(cpu, ops) if m) if any(ops) else float("nan")
    clean = "ok" if all(r["exit"] == 0 for r in runs) else "ERRORS"
    return value, per_op, clean


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


SCENARIOS = {
    "echo_100x10x32B": (["echo", "-c", "100", "-k", "10", "-s", "32"], "rate_per_s", "msg/s"),
    "echo_10x64KiB": (["echo", "-c", "10", "-k", "4", "-s", "65536"], "mb_per_s", "MB/s"),
    "broadcast_1000x64B": (
        ["broadcast", "--subscribers", "1000", "--publishers", "1", "-k", "16", "-s", "64"],
        "rate_per_s",
        "deliveries/s",
    ),
    "connect": (["connect", "-c", "50"], "rate_per_s", "handshakes/s"),
    "idle_memory_10000": (["hold", "-c", "10000"], "server_bytes_per_conn", "bytes/conn"),
}


def run_once(server, name, duration):
    args, key, _ = SCENARIOS[name]
    proc = start(server)
    try:
        time.sleep(0.3)
        path = "/broadcast" if args[0] == "broadcast" else "/"
        cmd = ["taskset", "-c", "1", SB, "bench"] + args + [
            "--url", f"ws://127.0.0.1:{PORT[server]}{path}",
            "--duration", str(duration if args[0] != "hold" else 2),
            "--warmup", "1",
            "--json",
        ]
        if args[0] == "hold":
            cmd += ["--server-pid", str(proc.pid)]
        cpu0 = cpu_seconds(proc.pid)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        cpu1 = cpu_seconds(proc.pid)
        if not out.stdout.strip():
            raise RuntimeError(f"bench printed nothing: {out.stderr[-500:]}")
        result = json.loads(out.stdout)
        result["exit"] = out.returncode
        result["server_cpu_s"] = cpu1 - cpu0
        result["value"] = result.get(key, 0)
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--json")
    a = ap.parse_args()
    build()
    names = a.only or list(SCENARIOS)
    results = {n: {"switchboard": [], "tokio-tungstenite": []} for n in names}
    for name in names:
        for r in range(a.rounds):
            for server in ("switchboard", "tokio-tungstenite"):
                res = run_once(server, name, a.duration)
                results[name][server].append(res)
                print(
                    f"{name:<20} round {r + 1} {server:<18} {res['value']:>14,.0f} "
                    f"{SCENARIOS[name][2]}  exit {res['exit']}  lost {res.get('lost')} "
                    f"corrupted {res.get('corrupted')}  client CPU {res.get('client_cpu_s', 0):.2f}s  "
                    f"server CPU {res['server_cpu_s']:.2f}s",
                    file=sys.stderr,
                    flush=True,
                )
    print()
    print(f"| scenario | tokio-tungstenite | switchboard | ratio | server CPU µs/msg (tt / sb) | integrity (tt / sb) |")
    print("|---|---|---|---|---|---|")
    for name in names:
        unit = SCENARIOS[name][2]
        med, per_msg, clean = {}, {}, {}
        for server, runs in results[name].items():
            med[server], per_msg[server], clean[server] = summarize(runs)
        ratio = med["switchboard"] / med["tokio-tungstenite"] if med["tokio-tungstenite"] else float("inf")
        print(
            f"| {name} | {med['tokio-tungstenite']:,.0f} {unit} | {med['switchboard']:,.0f} {unit} | "
            f"{ratio:.2f}× | {per_msg['tokio-tungstenite']:.2f} / {per_msg['switchboard']:.2f} | "
            f"{clean['tokio-tungstenite']} / {clean['switchboard']} |"
        )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
