#!/usr/bin/env python3
"""Side-by-side benchmark: `switchboard echo` against a tokio-tungstenite server and,
when given, a uWebSockets server built locally.

Builds switchboard and the tokio-tungstenite peer (release), then for each scenario runs
the bench client against each server in turn, A B A B..., with the server pinned to core 0
and the client to core 1 (`taskset`), one server thread each. The bench client reads the
server's CPU time over its measured window (`--server-pid`), so every rate is also given
per fully busy server core: rate / server CPU share. Prints medians of both.

--uws BIN adds a uWebSockets server the user built: `BIN PORT` must listen on 127.0.0.1,
echo every text or binary message on any path, and on /broadcast publish each message to
every /broadcast connection, the sender included. Nothing of uWebSockets is in this
repository; BENCHMARKS.md names the commit measured.

--servers picks the servers (and how they are run), in the order they alternate:
switchboard, tokio-tungstenite, uws (needs --uws), and the variants switchboard+tls and
tokio-tungstenite+tls (wss://: both on rustls with aws-lc-rs, a certificate made here with
openssl and trusted by the bench client through --ca) and switchboard+deflate
(permessage-deflate on; the bench client offers it without context takeover and inflates).
The ratio columns compare the first server with each other one. A switchboard server
named with `@before` (`switchboard+tls@before`) runs the binary given with --before
instead of this checkout's, on its own port: two builds side by side, A B A B.

Usage: scripts/compare.py [--rounds N] [--duration S] [--only NAME ...] [--servers NAME ...]
                          [--before BIN] [--uws BIN] [--json FILE]
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SB = os.path.join(ROOT, "target/release/switchboard")
TT = os.path.join(ROOT, "target/release/examples/tokio_tungstenite_server")
PORT = {
    "switchboard": 19201, "tokio-tungstenite": 19202, "uws": 19203,
    "switchboard+tls": 19204, "tokio-tungstenite+tls": 19205, "switchboard+deflate": 19206,
}
UWS = None  # path of a locally built uWebSockets peer, from --uws
CERTS = None  # directory with ca.pem, cert.pem, key.pem once a +tls server is asked for
BEFORE = None  # another switchboard binary, for servers named `...@before`


def port_of(server):
    base, _, tag = server.partition("@")
    return PORT[base] + (100 if tag else 0)


def make_certs():
    """A CA and a certificate for localhost signed by it, with openssl, in a temp dir."""
    d = tempfile.mkdtemp(prefix="sb-compare-tls-")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run = lambda *a: subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True)
    run("req", "-x509", *ec, "-days", "2", "-subj", "/CN=bench-ca", "-keyout", "ca.key", "-out", "ca.pem")
    run("req", *ec, "-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "leaf.csr")
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "ext", "-out", "cert.pem")
    return d


def build():
    subprocess.run(
        ["cargo", "build", "--release", "--bin", "switchboard", "--example", "tokio_tungstenite_server"],
        cwd=ROOT,
        check=True,
    )


def start(server):
    port = port_of(server)
    sb = BEFORE if server.endswith("@before") else SB
    server = server.partition("@")[0]
    tls = [os.path.join(CERTS, "cert.pem"), os.path.join(CERTS, "key.pem")] if server.endswith("+tls") else []
    if server.startswith("switchboard"):
        cmd = [sb, "echo", "--listen", f"127.0.0.1:{port}", "--workers", "1"]
        if tls:
            cmd += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        if server.endswith("+deflate"):
            cmd += ["--deflate"]
    elif server == "uws":
        cmd = [UWS, str(port)]
    else:
        cmd = [TT, f"127.0.0.1:{port}", "1"] + tls
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
    if all("server_cpu_us_per_event" in r for r in runs):
        per_op = statistics.median(r["server_cpu_us_per_event"] for r in runs)
    else:
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
    "broadcast_1000x1KiB": (
        ["broadcast", "--subscribers", "1000", "--publishers", "1", "-k", "16", "-s", "1024"],
        "rate_per_s",
        "deliveries/s",
    ),
    "echo_100x10x32B": (["echo", "-c", "100", "-k", "10", "-s", "32"], "rate_per_s", "msg/s"),
    "echo_10x64KiB": (["echo", "-c", "10", "-k", "4", "-s", "65536"], "mb_per_s", "MB/s"),
    "broadcast_1000x64B": (
        ["broadcast", "--subscribers", "1000", "--publishers", "1", "-k", "16", "-s", "64"],
        "rate_per_s",
        "deliveries/s",
    ),
    "broadcast_10000x64B": (
        ["broadcast", "--subscribers", "10000", "--publishers", "1", "-k", "16", "-s", "64"],
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
        port = port_of(server)
        kind = server.partition("@")[0]
        url = f"ws://127.0.0.1:{port}{path}"
        client = []
        if kind.endswith("+tls"):
            url = f"wss://localhost:{port}{path}"
            client = ["--ca", os.path.join(CERTS, "ca.pem")]
        if kind.endswith("+deflate"):
            client = ["--deflate"]
        cmd = ["taskset", "-c", "1", SB, "bench"] + args + client + [
            "--url", url,
            "--duration", str(duration if args[0] != "hold" else 2),
            "--warmup", "1",
            "--json",
        ]
        cmd += ["--server-pid", str(proc.pid)]
        cpu0 = cpu_seconds(proc.pid)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        cpu1 = cpu_seconds(proc.pid)
        if not out.stdout.strip():
            raise RuntimeError(f"bench printed nothing: {out.stderr[-500:]}")
        result = json.loads(out.stdout)
        result["exit"] = out.returncode
        # The bench's own figure covers only its measured window; this one the whole run.
        result["server_cpu_total_s"] = cpu1 - cpu0
        result.setdefault("server_cpu_s", cpu1 - cpu0)
        result["value"] = result.get(key, 0)
        # Per fully busy server core: the rate over the server's CPU share while measuring.
        busy = result.get("server_busy") or 0
        result["per_core"] = result["value"] / busy if busy > 0 else result["value"]
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main():
    global UWS, CERTS, BEFORE
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--uws", help="a locally built uWebSockets peer binary (see the docstring)")
    ap.add_argument("--servers", nargs="*",
                    choices=sorted(PORT) + [f"{s}@before" for s in PORT if s.startswith("switchboard")])
    ap.add_argument("--before", help="another switchboard binary, for the @before servers")
    ap.add_argument("--json")
    a = ap.parse_args()
    build()
    servers = a.servers or ["switchboard", "tokio-tungstenite"] + (["uws"] if a.uws else [])
    if a.uws:
        UWS = os.path.abspath(a.uws)
    if "uws" in servers and not UWS:
        ap.error("uws needs --uws BIN")
    if a.before:
        BEFORE = os.path.abspath(a.before)
    if any(s.endswith("@before") for s in servers) and not BEFORE:
        ap.error("@before servers need --before BIN")
    if any(s.partition("@")[0].endswith("+tls") for s in servers):
        CERTS = make_certs()
    names = a.only or list(SCENARIOS)
    results = {n: {s: [] for s in servers} for n in names}
    for name in names:
        for r in range(a.rounds):
            for server in servers:
                res = run_once(server, name, a.duration)
                results[name][server].append(res)
                print(
                    f"{name:<20} round {r + 1} {server:<18} {res['value']:>14,.0f} "
                    f"{SCENARIOS[name][2]}  per busy core {res['per_core']:>14,.0f}  "
                    f"server busy {res.get('server_busy', 0) * 100:3.0f}%  exit {res['exit']}  "
                    f"lost {res.get('lost')} corrupted {res.get('corrupted')}  "
                    f"client CPU {res.get('client_cpu_s', 0):.2f}s",
                    file=sys.stderr,
                    flush=True,
                )
    print_table(names, servers, results)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


def print_table(names, servers, results):
    """Medians per server: the rate, the rate per busy server core, and switchboard's ratio
    to each peer per busy core (memory: the plain figure, lower is better)."""
    first = servers[0]
    peers = servers[1:]
    head = " | ".join(f"{s} (rate / per busy core)" for s in servers)
    ratios = " | ".join(f"{first} / {p}" for p in peers)
    print()
    print(f"| scenario | {head} | {ratios} | server CPU µs/op ({' / '.join(servers)}) | exit |")
    print("|---|" + "---|" * (len(servers) + len(peers) + 2))
    for name in names:
        unit = SCENARIOS[name][2]
        cells, per_core, per_op, clean = [], {}, [], []
        for s in servers:
            runs = results[name][s]
            value, op, ok = summarize(runs)
            per_core[s] = statistics.median(r["per_core"] for r in runs)
            if name.startswith("idle_memory"):
                cells.append(f"{value:,.0f} {unit}")
            else:
                cells.append(f"{value:,.0f} / {per_core[s]:,.0f} {unit}")
            per_op.append(f"{op:.2f}")
            clean.append(ok)
        ratio = []
        for p in peers:
            if name.startswith("idle_memory"):
                ratio.append(f"{per_core[p] / per_core[first]:.2f}× less" if per_core[first] else "n/a")
            else:
                ratio.append(f"{per_core[first] / per_core[p]:.2f}×" if per_core[p] else "n/a")
        print(f"| {name} | {' | '.join(cells)} | {' | '.join(ratio)} | {' / '.join(per_op)} | {' / '.join(clean)} |")


if __name__ == "__main__":
    main()
