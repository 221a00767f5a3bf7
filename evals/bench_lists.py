"""Lists at scale: the thread list and the reviewer inbox, old beside new in one run.

``airlock bench lists [--threads 500] [--turns 20] [--reviews 10000] [--runs 50]`` creates a
scratch database on the server (``--database-url``, else ``$DATABASE_URL``, else the embedded
one), dropped at the end unless ``--keep``, and seeds it quickly:

* one customer thread of ``--turns`` real turns (offline planner), whose latest checkpoint
  (with the blobs it points at) is copied by SQL to ``--threads`` threads of that customer;
* ``--reviews`` pending cases inserted directly into ``reviews`` (half each for the
  ``supervisor`` and ``reviewer`` roles, which the bench reviewer holds);

then runs ``VACUUM ANALYZE`` on the tables (as autovacuum would in time).

Then it times, after a warm-up, with p50/p95 over ``--runs`` calls:

* the chat view's thread list (50 newest): **old**, the table then each listed thread's
  checkpoint (``get_state``, as ``list_threads`` did before migration 018), and **new**,
  ``list_threads`` from the table alone;
* the inbox's first page: **old**, ``ReviewStore.find`` capped at 200 (it said "200 pending"),
  and **new**, ``review_page`` (50 cases, the true count, the reopen check), plus a page deep
  in the list through its cursor.

Writes JSON (default ``evals/reports/bench_lists.json``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "run"]

USER = "lei_rossi_3206"
ROLES = ["reviewer", "supervisor"]
TURNS = ("Show me reservation VAAOXJ", "What can you help me with?")
TARGETS_MS = {"threads": 20.0, "inbox": 20.0}


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered), 2),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
            "max_ms": round(ordered[-1], 2), "n": len(ordered)}


def _time(fn: Callable[[], Any], runs: int, warmup: int = 3) -> tuple[dict[str, float], Any]:
    for _ in range(warmup):
        out = fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        samples.append((time.perf_counter() - start) * 1000)
    return _stats(samples), out


def _seed_threads(app: Any, *, threads: int, turns: int) -> str:
    """Run one real thread of ``turns`` turns, copy its latest checkpoint to ``threads - 1`` more; return its id."""
    source = app.new_thread(user_id=USER)
    for i in range(turns):
        app.send(thread_id=source, user_id=USER, text=TURNS[i % len(TURNS)])
    copies = [uuid.uuid4().hex for _ in range(threads - 1)]
    with app.services.pool.connection() as conn:
        latest = conn.execute(
            "SELECT checkpoint_ns, checkpoint_id FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = ''"
            " ORDER BY checkpoint_id DESC LIMIT 1", (source,)).fetchone()
        assert latest is not None, "the seed thread has no checkpoint"
        ns, cid = latest["checkpoint_ns"], latest["checkpoint_id"]
        with conn.transaction():
            conn.execute(
                "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type,"
                " checkpoint, metadata) SELECT t.id, c.checkpoint_ns, c.checkpoint_id, c.parent_checkpoint_id, c.type,"
                " c.checkpoint, c.metadata FROM checkpoints c, unnest(%s::text[]) AS t(id)"
                " WHERE c.thread_id = %s AND c.checkpoint_ns = %s AND c.checkpoint_id = %s",
                (copies, source, ns, cid))
            conn.execute(
                "INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)"
                " SELECT t.id, b.checkpoint_ns, b.channel, b.version, b.type, b.blob"
                " FROM checkpoint_blobs b JOIN checkpoints c ON c.thread_id = b.thread_id"
                "  AND c.checkpoint_ns = b.checkpoint_ns AND c.checkpoint_id = %s"
                "  AND c.checkpoint -> 'channel_versions' ->> b.channel = b.version,"
                " unnest(%s::text[]) AS t(id) WHERE b.thread_id = %s AND b.checkpoint_ns = %s",
                (cid, copies, source, ns))
            conn.execute(
                "INSERT INTO threads (thread_id, user_id, title, created_at, updated_at, status, pending)"
                " SELECT t.id, %s, 'Bench conversation ' || t.n, now() - make_interval(mins => t.n::int),"
                " now() - make_interval(mins => t.n::int), 'idle', '{}'"
                " FROM unnest(%s::text[]) WITH ORDINALITY AS t(id, n)",
                (USER, copies))
    return source


def _seed_reviews(app: Any, n: int) -> None:
    """Insert ``n`` pending cases (due over the next day) in one statement."""
    payload = json.dumps({"action_requests": [{"name": "transfer_to_human_agents", "args": {},
                                               "description": "bench case"}]})
    with app.services.pool.connection() as conn:
        conn.execute(
            "INSERT INTO reviews (review_id, thread_id, interrupt_id, user_id, assignee, tool, escalation_id, phase,"
            " payload, timeout_action, due_at)"
            " SELECT md5(random()::text || g)::text, 'bench-' || g, 'i-' || g, %s,"
            " (ARRAY['supervisor', 'reviewer'])[1 + g %% 2], 'transfer_to_human_agents', 'handoff',"
            " 'before', %s::jsonb, 'reject', now() + make_interval(secs => 3600 + (g %% 86400))"
            " FROM generate_series(1, %s) AS g",
            (USER, payload, n))


def _old_thread_list(app: Any) -> list[dict[str, Any]]:
    """The thread list as it was before migration 018: the table, then every listed thread's checkpoint."""
    with app.services.pool.connection() as conn:
        rows = [dict(r) for r in conn.execute(
            "SELECT thread_id, user_id, title, created_at, updated_at FROM threads WHERE user_id = %s"
            " ORDER BY updated_at DESC LIMIT %s", (USER, 50)).fetchall()]
    for row in rows:
        row["pending"] = [p.kind for p in app.pending(row["thread_id"])]
    return rows


def run(*, threads: int = 500, turns: int = 20, reviews: int = 10_000, runs: int = 50,
        database_url: str | None = None, keep: bool = False, old: bool = True) -> dict[str, Any]:
    """Seed a scratch database and time the lists; return the results."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from graph.db import resolve_database_url
    from graph.runtime import AirlockServices, AirlockSettings
    from graph.service import AirlockApp

    server = resolve_database_url(database_url)
    name = f"airlock_bench_lists_{uuid.uuid4().hex[:8]}"
    admin = server  # CREATE / DROP DATABASE from the server's own database
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(server, dbname=name)
    results: dict[str, Any] = {"threads": threads, "turns": turns, "reviews": reviews, "runs": runs,
                               "database": name if keep else "(dropped)"}
    # The scratch database is the bench's own: without keys in the environment, throwaway ones
    # (its audit log and vault are dropped with it).
    for key in ("AIRLOCK_AUDIT_KEY", "AIRLOCK_VAULT_KEY"):
        if not os.environ.get(key) and not os.environ.get(key + "_FILE"):
            os.environ[key] = base64.b64encode(os.urandom(32)).decode()
    try:
        services = AirlockServices.start(AirlockSettings.from_env(database_url=url, model_provider="offline"))
        try:
            app = AirlockApp(services=services)
            start = time.perf_counter()
            _seed_threads(app, threads=threads, turns=turns)
            _seed_reviews(app, reviews)
            with psycopg.connect(url, autocommit=True) as conn:  # as the owner: what autovacuum does in time
                for table in ("reviews", "threads", "checkpoints", "checkpoint_blobs"):
                    conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))
            results["seed_s"] = round(time.perf_counter() - start, 1)
            rows: dict[str, Any] = {}
            if old:
                stats, listed = _time(lambda: _old_thread_list(app), max(3, runs // 5))
                rows["threads, old (table + get_state per thread)"] = {**stats, "listed": len(listed)}
            stats, listed = _time(lambda: app.list_threads(user_id=USER), runs)
            rows["threads, new (table only)"] = {**stats, "listed": len(listed)}
            stats, page = _time(lambda: app.thread_page(user_id=USER), runs)
            rows["threads page with total, new"] = {**stats, "listed": len(page.items), "total": page.total}
            store = services.reviews
            assert store is not None
            if old:
                # As list_reviews was: reopen abandoned cases, then at most 200 rows (its count).
                def old_inbox() -> list[dict[str, Any]]:
                    app._reopen_abandoned()
                    return store.find(assignees=ROLES, status="pending")

                stats, found = _time(old_inbox, runs)
                rows["inbox, old (find, capped at 200)"] = {**stats, "listed": len(found), "said_pending": len(found)}
            stats, page = _time(lambda: app.review_page(roles=ROLES), runs)
            rows["inbox first page, new (true count)"] = {**stats, "listed": len(page.items), "total": page.total}
            deep = page
            for _ in range(100):
                if deep.next is None:
                    break
                deep = app.review_page(roles=ROLES, cursor=deep.next)
            cursor = deep.next or page.next
            stats, far = _time(lambda: app.review_page(roles=ROLES, cursor=cursor), runs)
            rows["inbox page ~100 deep, new (cursor)"] = {**stats, "listed": len(far.items), "total": far.total,
                                                          "start": far.start}
            results["rows"] = rows
        finally:
            services.close()
    finally:
        if not keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``airlock bench lists``."""
    parser = argparse.ArgumentParser(prog="airlock bench lists", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=500, help="threads of the customer (default 500)")
    parser.add_argument("--turns", type=int, default=20, help="turns of each thread (default 20)")
    parser.add_argument("--reviews", type=int, default=10_000, help="pending cases (default 10000)")
    parser.add_argument("--runs", type=int, default=50, help="timed calls per row (default 50)")
    parser.add_argument("--no-old", action="store_true", help="time the new lists only")
    parser.add_argument("--keep", action="store_true",
                        help="keep the scratch database (to open it again, run with AIRLOCK_AUDIT_KEY and "
                        "AIRLOCK_VAULT_KEY set: without them the bench uses throwaway keys)")
    parser.add_argument("--json", default="evals/reports/bench_lists.json", help="where to write JSON")
    parser.add_argument("--database-url", help="Postgres server URL (default: $DATABASE_URL, else embedded)")
    args = parser.parse_args(argv)
    results = run(threads=args.threads, turns=args.turns, reviews=args.reviews, runs=args.runs,
                  database_url=args.database_url, keep=args.keep, old=not args.no_old)
    print(f"lists: {args.threads} threads x {args.turns} turns, {args.reviews} pending cases "
          f"(seeded in {results['seed_s']} s); {args.runs} timed calls per row")
    print(f"{'list':<48} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  shown")
    for label, r in results["rows"].items():
        extra = f"{r['listed']} rows" + (f", total {r['total']:,}" if "total" in r else "")
        if "said_pending" in r:
            extra += f', said "{r["said_pending"]} pending"'
        print(f"{label:<48} {r['p50_ms']:>8} {r['p95_ms']:>8} {r['max_ms']:>8}  {extra}")
    print(f"targets: thread list <= {TARGETS_MS['threads']} ms, inbox first page with the true count "
          f"<= {TARGETS_MS['inbox']} ms")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
