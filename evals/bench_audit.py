"""Benchmark audit appends from one and several processes: the stream chains beside the old global lock.

Each process appends ``--n`` events, each in its own transaction, spread over ``--threads``
conversations, and times every append. Two designs run on the same scratch database in one run:

* ``streams``: :meth:`nodes.audit.AuditLog.append` (a chain per stream, a lock on its head row);
* ``global lock``: the append before migration 017, reproduced here on a table of its own: a
  database-wide advisory lock, the newest event of the one chain, then the insert.

A scratch database is created on the server of ``--database-url`` (default ``$DATABASE_URL``)
and dropped afterwards, so no real audit log is touched. Prints p50/p95/max per append and
appends per second, and writes JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import multiprocessing
import os
import statistics
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["main", "run"]

_LEGACY_LOCK = 0x41_55_44_54  # the old chain lock's id ("AUDT")
_LEGACY_TABLE = """
CREATE TABLE IF NOT EXISTS bench_audit_legacy (
    id bigserial PRIMARY KEY, seq bigint NOT NULL UNIQUE, ts timestamptz NOT NULL, event_type text NOT NULL,
    actor text NOT NULL, thread_id text, tool text, payload jsonb NOT NULL, prev_hash text NOT NULL,
    hash text NOT NULL UNIQUE, key_id text);
CREATE TABLE IF NOT EXISTS bench_audit_work (id bigserial PRIMARY KEY, thread_id text NOT NULL)
"""


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _legacy_append(conn: Any, key: Any, *, actor: str, thread_id: str, payload: dict[str, Any]) -> None:
    """Append as the code before migration 017 did: one chain, one database-wide lock (in the caller's transaction)."""
    from psycopg.types.json import Jsonb

    from nodes.audit import GENESIS_HASH, canonical, event_body

    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LEGACY_LOCK,))
    row = conn.execute("SELECT seq, hash FROM bench_audit_legacy ORDER BY seq DESC LIMIT 1").fetchone()
    seq = int(row["seq"]) + 1 if row else 1
    prev = str(row["hash"]) if row else GENESIS_HASH
    ts = datetime.now(UTC)
    body = event_body({"ts": ts, "event_type": "bench.event", "actor": actor, "thread_id": thread_id,
                       "tool": None, "payload": payload, "seq": seq, "key_id": key.key_id})
    digest = hmac.new(key.chain_key, (prev + canonical(body)).encode(), hashlib.sha256).hexdigest()
    conn.execute(
        "INSERT INTO bench_audit_legacy (seq, ts, event_type, actor, thread_id, tool, payload, prev_hash, hash,"
        " key_id) VALUES (%s, %s, 'bench.event', %s, %s, NULL, %s, %s, %s, %s)",
        (seq, ts, actor, thread_id, Jsonb(payload), prev, digest, key.key_id),
    )


def _worker(args: tuple[str, str, bytes, int, int, int, int, Any]) -> list[float]:
    """Append ``n`` events (after every worker is ready) and return each transaction's milliseconds.

    Each event is appended in a transaction of its own, followed by ``hold`` more statements
    in that transaction (what a guarded write does after its audit event: the outcome, the
    ledger), so the chain's lock is held until they are done, as in the app.
    """
    url, design, raw_key, worker, n, threads, hold, barrier = args
    from graph.db import open_pool
    from nodes.audit import AuditLog
    from nodes.audit_key import AuditKey

    key = AuditKey(raw_key)
    pool = open_pool(url, max_size=2)
    samples: list[float] = []
    try:
        audit = AuditLog(pool=pool, key=key, anchor_every=0)
        with pool.connection() as conn:
            barrier.wait()
            for i in range(n):
                thread = f"bench-{worker}-{i % threads}"
                started = time.perf_counter()
                with conn.transaction():
                    if design == "streams":
                        audit.append_on(conn.cursor(), "bench.event", actor="bench", thread_id=thread,
                                        payload={"i": i})
                    else:
                        _legacy_append(conn, key, actor="bench", thread_id=thread, payload={"i": i})
                    for _ in range(hold):
                        conn.execute("INSERT INTO bench_audit_work (thread_id) VALUES (%s)", (thread,))
                samples.append((time.perf_counter() - started) * 1000)
    finally:
        pool.close()
    return samples


def _scratch(server: str) -> tuple[str, str]:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    name = f"airlock_bench_audit_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(make_conninfo(server, dbname="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name, make_conninfo(server, dbname=name)


def _drop(server: str, name: str) -> None:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    with psycopg.connect(make_conninfo(server, dbname="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def run(*, database_url: str, n: int = 200, processes: Sequence[int] = (1, 2), threads: int = 50,
        holds: Sequence[int] = (0, 3), rounds: int = 3) -> dict[str, Any]:
    """Run the benchmark and return the results."""
    from graph.db import migrate, open_pool
    from nodes.audit import AuditLog
    from nodes.audit_key import AuditKey

    name, url = _scratch(database_url)
    raw_key = os.urandom(32)
    results: dict[str, Any] = {"n_per_process": n, "threads_per_process": threads, "rounds": rounds, "runs": []}
    try:
        pool = open_pool(url, max_size=2)
        try:
            migrate(pool, domains=())
            with pool.connection() as conn:
                for statement in _LEGACY_TABLE.split(";"):
                    conn.execute(statement)
        finally:
            pool.close()
        ctx = multiprocessing.get_context("spawn")
        configs = [(h, d, c) for h in holds for d in ("global lock", "streams") for c in processes]
        samples: dict[tuple[int, str, int], list[float]] = {k: [] for k in configs}
        busy: dict[tuple[int, str, int], float] = {k: 0.0 for k in configs}
        # Rounds interleave the designs, so a burst of load on a shared machine hits both.
        for _ in range(max(1, rounds)):
            for config in configs:
                hold, design, count = config
                with ctx.Manager() as manager:
                    barrier = manager.Barrier(count)
                    with ctx.Pool(count) as workers:
                        per = workers.map(_worker, [(url, design, raw_key, w, n, threads, hold, barrier)
                                                    for w in range(count)])
                samples[config] += [s for worker in per for s in worker]
                busy[config] += max(sum(worker) for worker in per) / 1000
        for (hold, design, count), got in samples.items():
            results["runs"].append({
                "design": design, "processes": count, "hold_statements": hold, "appends": len(got),
                "p50_ms": round(statistics.median(got), 3), "p95_ms": round(_pct(got, 0.95), 3),
                "max_ms": round(max(got), 3), "appends_per_s": round(len(got) / busy[(hold, design, count)], 1),
            })
        pool = open_pool(url, max_size=2)
        try:
            report = AuditLog(pool=pool, key=AuditKey(raw_key)).verify()
            results["verify"] = {"ok": report.ok, "checked": report.checked, "streams": report.streams,
                                 "reason": report.reason}
        finally:
            pool.close()
    finally:
        _drop(database_url, name)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``airlock bench audit``."""
    parser = argparse.ArgumentParser(prog="airlock bench audit", description=(__doc__ or "").split("\n\n")[0],
                                     epilog="A scratch database is created and dropped; no audit log is touched.")
    parser.add_argument("--n", type=int, default=200, help="appends per process (default 200)")
    parser.add_argument("--processes", default="1,2", help="process counts to run, comma-separated (default 1,2)")
    parser.add_argument("--threads", type=int, default=50,
                        help="conversations each process spreads its appends over (default 50)")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"),
                        help="Postgres server to create the scratch database on (default: $DATABASE_URL)")
    parser.add_argument("--hold", default="0,3",
                        help="statements run after the append in its transaction, comma-separated runs (default 0,3)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="repeat every configuration this many times, interleaved (default 3)")
    parser.add_argument("--json", default="evals/reports/bench_audit.json", help="where to write JSON")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url or DATABASE_URL is required (the benchmark creates a scratch database there)")
    counts = [int(p) for p in str(args.processes).split(",") if p.strip()]
    holds = [int(h) for h in str(args.hold).split(",") if h.strip()]
    results = run(database_url=args.database_url, n=args.n, processes=counts, threads=args.threads, holds=holds,
                  rounds=args.rounds)
    print(f"audit appends, {args.n} per process x {args.rounds} rounds, each in its own transaction, over "
          f"{args.threads} conversations; held: statements after the append in its transaction")
    print(f"{'design':<12} {'held':>4} {'procs':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'appends/s':>10}")
    for r in results["runs"]:
        print(f"{r['design']:<12} {r['hold_statements']:>4} {r['processes']:>5} {r['p50_ms']:>8} {r['p95_ms']:>8} "
              f"{r['max_ms']:>8} {r['appends_per_s']:>10}")
    verify = results["verify"]
    print(f"verify (streams): ok={verify['ok']} checked={verify['checked']} streams={verify['streams']}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if verify["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
