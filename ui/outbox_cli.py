"""``airlock outbox``: run a notification worker, list messages and dead letters, retry dead letters."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from graph.errors import AirlockError

__all__ = ["outbox_main"]

_STATUSES = ("dead", "pending", "sending", "sent", "skipped", "all")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="airlock outbox",
        description="Notifications (a review decided, a change executed, a confirm gate waiting) are written to "
                    "the outbox table with their event and delivered by workers to SMTP e-mail and a webhook, "
                    "at least once, with the message key as Message-ID / Idempotency-Key. Settings come from "
                    "AIRLOCK_NOTIFY_*, AIRLOCK_SMTP_* and AIRLOCK_OUTBOX_* (see the README).",
    )
    parser.add_argument("--database-url", help="Postgres URL (default: $DATABASE_URL, else the embedded server)")
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="deliver due messages until stopped (SIGTERM/SIGINT); safe to run several",
                         description="Deliver due messages until stopped. Any number of workers (here or in "
                                     "`airlock serve`, AIRLOCK_OUTBOX_WORKER=1) may run: rows are leased with "
                                     "FOR UPDATE SKIP LOCKED.")
    run.add_argument("--once", action="store_true", help="do one pass and exit (prints its counts as JSON)")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    listing = sub.add_parser("list", help="list messages (dead letters by default)",
                             description="List messages, newest first; by default the dead letters.")
    listing.add_argument("--status", default="dead", choices=_STATUSES, help="which messages (default dead)")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.add_argument("--json", action="store_true", help="print JSON lines")
    retry = sub.add_parser("retry", help="put dead letters back in the queue (same message key)",
                           description="Return dead letters to pending with a fresh attempt count; they keep "
                                       "their message key, so a receiver that got an earlier attempt drops it.")
    retry.add_argument("ids", nargs="*", type=int, help="message ids (see `airlock outbox list`)")
    retry.add_argument("--all", action="store_true", help="every dead letter")
    sub.add_parser("stats", help="count messages per status", description="Count messages per status.")
    return parser


def _pool(url: str | None) -> Any:
    from graph.db import open_pool, resolve_database_url
    from graph.runtime import AirlockSettings
    from nodes.audit_key import APP_ROLE

    settings = AirlockSettings.from_env(database_url=url)
    resolved = resolve_database_url(settings.database_url, environ={}, data_dir=settings.data_dir)
    return settings, open_pool(resolved, max_size=4, role=APP_ROLE)


def _run(settings: Any, pool: Any, once: bool) -> int:
    from graph.outbox import OutboxWorker
    from graph.plugins import load_plugin

    notify = settings.notify
    if not notify.enabled:
        print("airlock: no notification route is configured (AIRLOCK_SMTP_HOST with AIRLOCK_NOTIFY_EMAIL_TO, "
              "or AIRLOCK_NOTIFY_WEBHOOK_URL); nothing to deliver", file=sys.stderr)
        return 2
    domain = load_plugin(settings.domain, policy_path=settings.policy_path).build(pool)
    worker = OutboxWorker(pool=pool, settings=notify, contacts=domain)
    if once:
        done = worker.run_once()
        print(json.dumps(asdict(done)))
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"airlock outbox: worker {worker.holder} delivering ({notify.describe()})", flush=True)
    worker.run(stop)
    return 0


def outbox_main(argv: Sequence[str] | None = None) -> int:
    """Run ``airlock outbox``.

    Args:
        argv: The arguments after ``outbox``.

    Returns:
        The exit status (2 for bad settings or ids).
    """
    args = _parser().parse_args(list(argv) if argv is not None else None)
    if args.action == "run":
        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings, pool = _pool(args.database_url)
    except (AirlockError, ValueError) as exc:
        print(f"airlock: {exc}", file=sys.stderr)
        return 2
    from graph.outbox import OutboxStore

    store = OutboxStore(pool)
    try:
        if args.action == "run":
            return _run(settings, pool, args.once)
        if args.action == "stats":
            print(json.dumps(store.counts(), sort_keys=True))
            return 0
        if args.action == "list":
            rows = store.messages(status=None if args.status == "all" else args.status, limit=max(1, args.limit))
            for row in rows:
                if args.json:
                    print(json.dumps(row, default=str, sort_keys=True))
                else:
                    print(f"{row['id']:>6}  {row['status']:<8} {row['kind']:<16} {row['channel']:<7} "
                          f"{row['audience']:<8} attempts={row['attempts']}  {row['last_error'] or ''}")
            if not rows and not args.json:
                print(f"no {args.status} messages")
            return 0
        if not args.ids and not args.all:
            print("airlock: name message ids or pass --all", file=sys.stderr)
            return 2
        done = store.retry(None if args.all else list(args.ids))
        print(f"back in the queue: {', '.join(map(str, done)) or 'none'}")
        return 0
    except AirlockError as exc:
        print(f"airlock: {exc}", file=sys.stderr)
        return 2
    finally:
        pool.close()
