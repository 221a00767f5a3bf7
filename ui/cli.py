"""The ``airlock`` command. Every sub-command has ``--help``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from graph.runtime import AirlockSettings

    return AirlockSettings.from_env(
        database_url=getattr(args, "database_url", None),
        policy_path=Path(args.policy) if getattr(args, "policy", None) else None,
    )


def _services(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from graph.runtime import AirlockServices

    return AirlockServices.start(_settings(args))


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the Gradio app."""
    import os

    from ui.app import launch

    if os.environ.get("AIRLOCK_METRICS_PORT"):
        from nodes.metrics import init_metrics

        init_metrics(port=int(os.environ["AIRLOCK_METRICS_PORT"]))

    return launch(
        host=args.host, port=args.port, settings=_settings(args), allow_remote=args.allow_remote
    )


def cmd_scan(args: argparse.Namespace, rest: Sequence[str]) -> int:
    """Run the guard pipeline over lines of input."""
    from ui.scan import scan_main

    return scan_main(list(rest))


def cmd_bench(args: argparse.Namespace, rest: Sequence[str]) -> int:
    """Run the benchmarks: ``airlock bench [layers|turn|all] [options of that benchmark]``."""
    rest = list(rest)
    which = rest.pop(0) if rest and rest[0] in ("layers", "turn", "all") else "all"
    if rest and rest[0] in ("-h", "--help") and which == "all":
        print("usage: airlock bench [layers|turn|all] [options]\n\n"
              "  layers  per-layer p50/p95/max of the guard pipeline, with Presidio's defaults as baseline\n"
              "  turn    one guarded turn end to end (offline planner, Postgres), with and without layers 2-5\n"
              "  all     both (default)\n\n`airlock bench layers --help` and `airlock bench turn --help` list options.")
        return 0
    from evals.bench import main as bench_layers
    from evals.bench_turn import main as bench_turn

    code = 0
    if which in ("layers", "all"):
        code |= int(bench_layers(rest if which == "layers" else []) or 0)
    if which in ("turn", "all"):
        code |= int(bench_turn(rest if which == "turn" else []) or 0)
    return code


def cmd_db(args: argparse.Namespace) -> int:
    """Database maintenance."""
    from graph.db import applied_migrations, available_migrations, migrate, open_pool, resolve_database_url

    if args.db_command == "stop":
        data = (Path(_settings(args).data_dir) / "pg").resolve()
        if not (data / "postmaster.pid").exists():
            print(f"no embedded Postgres running in {data}; nothing to stop")
            return 0
        import pgserver
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        # pgserver runs the server as its own (unprivileged) user; stop it as that user.
        server = pgserver.get_server(str(data), cleanup_mode=None)
        pg_ctl(["-w", "stop", "-m", "fast"], pgdata=data, user=server.system_user)
        print(f"stopped the embedded Postgres in {data}")
        return 0
    url = resolve_database_url(args.database_url, data_dir=_settings(args).data_dir)
    pool = open_pool(url, max_size=2)
    try:
        if args.db_command == "migrate":
            applied = migrate(pool)
            print(f"applied: {applied or 'nothing (up to date)'}")
        else:
            done = set(applied_migrations(pool))
            for m in available_migrations():
                print(f"{m.version:03d}_{m.name}: {'applied' if m.version in done else 'pending'}")
    finally:
        pool.close()
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """Verify or show the audit log."""
    from graph.db import migrate, open_pool, resolve_database_url
    from nodes.audit import AuditLog

    url = resolve_database_url(args.database_url, data_dir=_settings(args).data_dir)
    pool = open_pool(url, max_size=2)
    try:
        migrate(pool)
        audit = AuditLog(pool=pool)
        if args.audit_command == "verify":
            report = audit.verify()
            print(json.dumps({"ok": report.ok, "checked": report.checked,
                              "first_bad_id": report.first_bad_id, "reason": report.reason}))
            return 0 if report.ok else 1
        for event in audit.events(thread_id=args.thread, limit=args.limit):
            print(json.dumps({"id": event.id, "ts": event.ts.isoformat(), "type": event.event_type,
                              "actor": event.actor, "thread": event.thread_id, "tool": event.tool,
                              "payload": event.payload}, default=str))
    finally:
        pool.close()
    return 0


def cmd_eval(args: argparse.Namespace, rest: Sequence[str]) -> int:
    """Run the quality reports."""
    import subprocess

    code = 0
    for module in ("evals.quality", "evals.pii_eval"):
        code |= subprocess.call([sys.executable, "-m", module, *rest])
    return code


def cmd_policy(args: argparse.Namespace) -> int:
    """Validate a policy file."""
    from graph.policy import PolicyError, load_policy
    from tools.airline import POLICY_PATH
    from tools.airline.schemas import AIRLINE_TOOLS

    path = args.file or POLICY_PATH
    try:
        policy = load_policy(path, known_tools=AIRLINE_TOOLS)
    except PolicyError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"{path}: ok ({len(policy.tools)} tools, {len(policy.escalations)} escalations, "
          f"{len(policy.guards.input)} input layers)")
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    """Print the graph as Mermaid."""
    from graph.builder import build_graph

    services = _services(args)
    try:
        print(build_graph(services=services).get_graph().draw_mermaid())
    finally:
        services.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser."""
    parser = argparse.ArgumentParser(
        prog="airlock",
        description="A guarded LangGraph customer-service agent: demo, scanner, reviewer and admin tools.",
    )
    parser.add_argument("--database-url", help="Postgres URL (default: $DATABASE_URL, else embedded)")
    parser.add_argument("--policy", help="policy YAML (default: $AIRLOCK_POLICY, else the airline policy)")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the Gradio app (chat, reviewer inbox, audit)")
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    demo.add_argument("--allow-remote", action="store_true",
                      help="allow a non-loopback address (requires configured accounts)")

    sub.add_parser("scan", help="run the guard pipeline over lines of text or JSONL (see `airlock scan --help`)",
                   add_help=False)
    sub.add_parser("bench", help="latency benchmarks (see `airlock bench --help`)", add_help=False)
    sub.add_parser("review", help="terminal reviewer: list, show, approve, reject, edit, sweep "
                   "(see `airlock review --help`)", add_help=False)
    sub.add_parser("accounts", help="hash a password or check an accounts file", add_help=False)
    sub.add_parser("eval", help="quality reports: guard pipeline confusion matrices and PII recall", add_help=False)

    db = sub.add_parser("db", help="database maintenance")
    db.add_argument("db_command", choices=["migrate", "status", "stop"],
                    help="migrate: apply migrations; status: list them; stop: stop the embedded Postgres")

    audit = sub.add_parser("audit", help="verify or list the hash-chained audit log")
    audit.add_argument("audit_command", choices=["verify", "list"])
    audit.add_argument("--thread", help="only this thread (list)")
    audit.add_argument("--limit", type=int, default=50, help="number of events (list)")

    policy = sub.add_parser("policy", help="validate a policy file")
    policy.add_argument("file", nargs="?", help="policy YAML (default: the airline policy)")

    sub.add_parser("graph", help="print the graph as a Mermaid diagram")
    return parser


def cmd_review(args: argparse.Namespace, rest: Sequence[str]) -> int:
    """Run the terminal reviewer."""
    from ui.review_cli import review_main

    return review_main(list(rest))


def cmd_accounts(args: argparse.Namespace, rest: Sequence[str]) -> int:
    """Manage accounts."""
    from ui.auth import accounts_main

    return accounts_main(list(rest))


PASSTHROUGH = {"scan": cmd_scan, "bench": cmd_bench, "review": cmd_review, "accounts": cmd_accounts,
               "eval": cmd_eval}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Sub-commands with their own parsers get the rest of the line untouched.
    for i, token in enumerate(argv):
        if token in PASSTHROUGH:
            parser = build_parser()
            ns = parser.parse_args(argv[:i] + [token])
            return PASSTHROUGH[token](ns, argv[i + 1:])
        if not token.startswith("-"):
            break
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"demo": cmd_demo, "db": cmd_db, "audit": cmd_audit, "policy": cmd_policy, "graph": cmd_graph}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear one-line error instead of a traceback
        from graph.db import DatabaseConfigError, DatabaseUnavailableError
        from graph.policy import PolicyError

        if isinstance(exc, DatabaseConfigError | DatabaseUnavailableError | PolicyError):
            print(f"airlock: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
