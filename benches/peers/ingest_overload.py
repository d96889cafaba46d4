#!/usr/bin/env python3
"""Ingest through the release binary, measured from outside, beside a minimal Python loop.

Per run and offered rate: `nightcrier simulate --clusters C --rate R --faults F --reemit-every
1ms` in one process, `nightcrier run` subscribed to its C clusters (SQLite, triage off so no
agent runs) in another. Once all C sessions are subscribed (the `nightcrier_mcp_connected` gauges
on /metrics) and a warm-up has passed, the occurrence rows committed in the SQLite file are
counted over `--seconds` (max(id) of fault_occurrences, read from a separate connection), with the
drop and receive counters from /metrics and the CPU time of both processes over the same window.
Then, in the same run, `ingest_loop.py` writes the same kind of rows for `--seconds` into a fresh
database migrated by the same binary.

Prints one JSON line per measurement, then a summary with ranges.

Usage (from the repository root, after `cargo build --release --bin nightcrier`):
  python3 benches/peers/ingest_overload.py [--bin target/release/nightcrier] [--runs 3]
      [--rates 2000/s,4000/s] [--seconds 15] [--warmup 5] [--clusters 10] [--faults 500]
      [--no-loop] [--perf FILE]
"""

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def free_ports(n):
    for base in range(21000, 60000, 97):
        socks = []
        try:
            for i in range(n + 1):
                s = socket.socket()
                s.bind(("127.0.0.1", base + i))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise SystemExit("no free ports")


def wait_listening(port, limit=30):
    t = time.monotonic()
    while time.monotonic() - t < limit:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def metrics(url):
    try:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name_labels, value = line.rsplit(" ", 1)
        name = name_labels.split("{", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            pass
    return out


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rows(db):
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return c.execute("SELECT coalesce(max(id), 0) FROM fault_occurrences").fetchone()[0]
    finally:
        c.close()


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def config(dir_, base, clusters, http_port):
    lines = [
        "database:",
        f'  url: "sqlite://{dir_}/nightcrier.db"',
        f'workspace_root: "{dir_}/incidents"',
        "agent:",
        "  preset: command",
        '  command: ["true"]',
        "http:",
        f'  listen: "127.0.0.1:{http_port}"',
        "clusters:",
    ]
    for i in range(clusters):
        lines += [
            f"  - name: sim-{i + 1}",
            "    mcp:",
            f"      endpoint: http://127.0.0.1:{base + i}/mcp",
            "    triage:",
            "      enabled: false",
        ]
    path = os.path.join(dir_, "nightcrier.yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def one_run(a, rate):
    with tempfile.TemporaryDirectory(prefix="ingest-overload-") as d:
        base = free_ports(a.clusters)
        http_port = base + a.clusters
        sim = subprocess.Popen(
            [a.bin, "simulate", "--listen", f"127.0.0.1:{base}", "--clusters", str(a.clusters),
             "--rate", rate, "--faults", str(a.faults), "--reemit-every", a.reemit_every],
            stdout=open(os.path.join(d, "simulate.log"), "w"), stderr=subprocess.STDOUT)
        run = None
        try:
            for i in range(a.clusters):
                wait_listening(base + i)
            cfg = config(d, base, a.clusters, http_port)
            run = subprocess.Popen(
                [a.bin, "--config", cfg, "--log-level", "warn", "run"],
                stdin=subprocess.DEVNULL,
                stdout=open(os.path.join(d, "run.log"), "w"), stderr=subprocess.STDOUT)
            url = f"http://127.0.0.1:{http_port}/metrics"
            t = time.monotonic()
            while metrics(url).get("nightcrier_mcp_connected", 0) < a.clusters:
                if time.monotonic() - t > 60 or run.poll() is not None:
                    raise SystemExit(f"not subscribed; see {d}/run.log: "
                                     + open(os.path.join(d, "run.log")).read()[-2000:])
                time.sleep(0.1)
            time.sleep(a.warmup)
            db = os.path.join(d, "nightcrier.db")
            load = loadavg()
            m0, n0, c0, s0 = metrics(url), rows(db), cpu_seconds(run.pid), cpu_seconds(sim.pid)
            t0 = time.monotonic()
            if a.perf:
                # A flat profile of the `nightcrier run` process over the measured window.
                subprocess.run(["perf", "record", "-F", "499", "-p", str(run.pid), "-o",
                                f"{a.perf}.{rate.replace('/', '_')}", "--", "sleep",
                                str(a.seconds)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
            else:
                time.sleep(a.seconds)
            m1, n1, c1, s1 = metrics(url), rows(db), cpu_seconds(run.pid), cpu_seconds(sim.pid)
            t1 = time.monotonic()
            dt = t1 - t0
            recv = m1.get("nightcrier_events_received_total", 0) - m0.get(
                "nightcrier_events_received_total", 0)
            drop = m1.get("nightcrier_events_dropped_total", 0) - m0.get(
                "nightcrier_events_dropped_total", 0)
            return {
                "what": "nightcrier", "rate": rate, "clusters": a.clusters,
                "committed_per_s": round((n1 - n0) / dt),
                "received_per_s": round(recv / dt), "dropped_per_s": round(drop / dt),
                "dropped_total": int(m1.get("nightcrier_events_dropped_total", 0)),
                "run_cpu": round((c1 - c0) / dt, 2), "simulate_cpu": round((s1 - s0) / dt, 2),
                "seconds": round(dt, 2), "loadavg": load,
            }
        finally:
            if run is not None:
                stop(run)
            stop(sim)


def loop_run(a):
    with tempfile.TemporaryDirectory(prefix="ingest-loop-") as d:
        db = os.path.join(d, "loop.db")
        cfg = os.path.join(d, "min.yaml")
        with open(cfg, "w") as f:
            f.write(f'database:\n  url: "sqlite://{db}"\nworkspace_root: "{d}/ws"\n'
                    'agent:\n  preset: command\n  command: ["true"]\nhttp:\n  listen: ""\n'
                    "clusters: []\n")
        subprocess.run([a.bin, "--config", cfg, "migrate"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        load = loadavg()
        out = subprocess.run(
            [sys.executable, os.path.join(HERE, "ingest_loop.py"), db, "--seconds",
             str(a.seconds), "--clusters", str(a.clusters), "--faults", str(a.faults)],
            check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        return {"what": "python_loop", "rows_per_s": r["rows_per_s"], "parse": r["parse"],
                "loadavg": load}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/nightcrier")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rates", default="2000/s,4000/s")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--clusters", type=int, default=10)
    ap.add_argument("--faults", type=int, default=500)
    ap.add_argument("--reemit-every", default="1ms")
    ap.add_argument("--no-loop", action="store_true")
    ap.add_argument("--perf", help="perf record the run process into FILE.<rate>")
    a = ap.parse_args()
    results = []
    for _ in range(a.runs):
        for rate in a.rates.split(","):
            r = one_run(a, rate)
            print(json.dumps(r), flush=True)
            results.append(r)
        if not a.no_loop:
            r = loop_run(a)
            print(json.dumps(r), flush=True)
            results.append(r)

    def rng(xs):
        return f"{min(xs):,}–{max(xs):,}" if xs else "-"

    print("\nsummary (ranges over runs):")
    for rate in a.rates.split(","):
        rs = [r for r in results if r["what"] == "nightcrier" and r["rate"] == rate]
        print(f"  nightcrier {rate:>8} x{a.clusters}: committed {rng([r['committed_per_s'] for r in rs])}/s,"
              f" dropped {rng([r['dropped_per_s'] for r in rs])}/s,"
              f" load {', '.join(r['loadavg'].split()[0] for r in rs)}")
    ls = [r["rows_per_s"] for r in results if r["what"] == "python_loop"]
    if ls:
        print(f"  python loop: {rng(ls)} rows/s")


if __name__ == "__main__":
    main()
