#!/usr/bin/env python3
"""The simplest correct program a user could write for nightcrier's ingest rows: one thread,
Python's stdlib sqlite3, into a database migrated by `nightcrier migrate`.

Per fault notification: parse its JSON (unless --no-parse), look up the incident of its
(cluster, faultId) (open, else finished within the cooldown), add the occurrence to it or open a
new one (`skipped`, as nightcrier records a cluster with triage off), and insert the occurrence
row with the raw notification. One transaction per 500 notifications (nightcrier's
`ingest.batch_max`), WAL and synchronous=NORMAL as nightcrier's SQLite store sets them.

The notifications are those `nightcrier simulate --faults F` sends for C clusters (same fields,
same sizes), cycled in the simulator's order. Prints one JSON line:
{"rows": N, "seconds": S, "rows_per_s": R, "parse": true}.

Usage: ingest_loop.py DB [--seconds 15] [--clusters 10] [--faults 500] [--no-parse]
"""

import argparse
import json
import sqlite3
import time
import uuid

COOLDOWN_US = 30 * 60 * 1_000_000


def notifications(clusters, faults):
    """Pre-rendered `data:` payloads, as the SSE stream carries them."""
    kinds = [
        ("CrashLoop", "critical", "v1", "Pod",
         "Container entered CrashLoopBackOff state, restart count: 3, last exit code: 1, last reason: Error"),
        ("PodCrash", "warning", "v1", "Pod", "Container app terminated: exit code 1, reason Error"),
        ("NodeUnhealthy", "critical", "v1", "Node",
         "Node condition Ready is Unknown: Kubelet stopped posting node status"),
        ("DeploymentFailure", "warning", "apps/v1", "Deployment",
         "Deployment has 0 of 3 replicas available: ProgressDeadlineExceeded"),
        ("JobFailure", "warning", "batch/v1", "Job",
         "Job has reached the specified backoff limit: BackoffLimitExceeded"),
    ]
    out = []
    for i in range(faults):
        for c in range(clusters):
            ft, sev, api, kind, ctx = kinds[i % 5]
            res = {"apiVersion": api, "kind": kind, "name": f"obj-{i}-7d9f8b6c5-x2k4q",
                   "uid": str(uuid.UUID(int=(c << 64) | i))}
            if kind != "Node":
                res["namespace"] = "default"
            data = {"subscriptionId": "sub-5f1c2e9a", "cluster": f"sim-{c + 1}",
                    "faultId": f"{(c << 32) | i:016x}", "faultType": ft, "severity": sev,
                    "resource": res, "context": ctx, "timestamp": "2025-12-19T22:11:10+01:00"}
            msg = {"jsonrpc": "2.0", "method": "notifications/message",
                   "params": {"data": data, "level": "warning", "logger": "kubernetes/faults"}}
            out.append(json.dumps(msg, separators=(",", ":")))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("db")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--clusters", type=int, default=10)
    ap.add_argument("--faults", type=int, default=500)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--no-parse", action="store_true")
    a = ap.parse_args()

    frames = notifications(a.clusters, a.faults)
    parsed = [json.loads(f) for f in frames]
    db = sqlite3.connect(a.db, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    cur = db.cursor()
    rows = 0
    start = time.monotonic()
    deadline = start + a.seconds
    i = 0
    while time.monotonic() < deadline:
        cur.execute("BEGIN")
        for _ in range(a.batch):
            if a.no_parse:
                msg = parsed[i % len(frames)]
            else:
                msg = json.loads(frames[i % len(frames)])
            i += 1
            f = msg["params"]["data"]
            r = f["resource"]
            now = time.time_ns() // 1000
            row = cur.execute(
                "SELECT id FROM incidents WHERE cluster = ? AND fault_id = ? "
                "AND status IN ('pending', 'running')", (f["cluster"], f["faultId"])).fetchone()
            if row is None:
                row = cur.execute(
                    "SELECT id FROM incidents WHERE cluster = ? AND fault_id = ? "
                    "AND finished_at > ? ORDER BY finished_at DESC LIMIT 1",
                    (f["cluster"], f["faultId"], now - COOLDOWN_US)).fetchone()
            if row is None:
                incident = str(uuid.uuid4())
                cur.execute(
                    "INSERT INTO incidents (id, cluster, fault_id, fault_type, severity, namespace, "
                    "resource_kind, resource_name, resource_uid, context, status, occurrences, "
                    "first_seen, last_seen, created_at, finished_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'skipped', 1, ?, ?, ?, ?)",
                    (incident, f["cluster"], f["faultId"], f["faultType"], f["severity"],
                     r.get("namespace"), r["kind"], r["name"], r["uid"], f["context"],
                     now, now, now, now))
            else:
                incident = row[0]
                cur.execute(
                    "UPDATE incidents SET occurrences = occurrences + 1, last_seen = ? WHERE id = ?",
                    (now, incident))
            cur.execute(
                "INSERT INTO fault_occurrences (incident_id, cluster, fault_id, fault_type, "
                "severity, namespace, resource_kind, resource_name, resource_uid, context, "
                "server_timestamp, received_at, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (incident, f["cluster"], f["faultId"], f["faultType"], f["severity"],
                 r.get("namespace"), r["kind"], r["name"], r["uid"], f["context"], f["timestamp"],
                 now, json.dumps(f, separators=(",", ":"))))
            rows += 1
        cur.execute("COMMIT")
    elapsed = time.monotonic() - start
    print(json.dumps({"rows": rows, "seconds": round(elapsed, 3),
                      "rows_per_s": round(rows / elapsed), "parse": not a.no_parse}))


if __name__ == "__main__":
    main()
