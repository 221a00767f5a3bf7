"""The ``airlock`` command. Every sub-command has ``--help``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from graph.errors import AirlockError

__all__ = ["main"]


def _settings(args: argparse.Namespace):
    from graph.runtime import AirlockSettings

    return AirlockSettings.from_env(
        database_url=getattr(args, "database_url", None),
        policy_path=Path(args.policy) if getattr(args, "policy", None) else None,
    )


def _services(args: argparse.Namespace):
    from graph.runtime import AirlockServices

    return AirlockServices.start(_settings(args))


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the Gradio app for the domain of ``--domain`` (else ``AIRLOCK_DOMAIN``, the policy's, airline)."""
    import os

    from graph.plugins import DOMAIN_ENV, load_plugin, resolve_domain_name

    # One domain per process, settled before the app reads it: the demo accounts, the example
    # prompts and the services must all come from the same plugin, whichever way it was chosen.
    env = dict(os.environ)
    if args.domain:
        env[DOMAIN_ENV] = args.domain.strip()
    name = resolve_domain_name(policy_path=args.policy, environ=env)
    load_plugin(name)  # an unknown domain stops here, naming the available ones
    os.environ[DOMAIN_ENV] = name

    from ui.app import launch

    if os.environ.get("AIRLOCK_METRICS_PORT"):
        from nodes.metrics import init_metrics

        init_metrics(port=int(os.environ["AIRLOCK_METRICS_PORT"]))

    return launch(
        host=args.host, port=args.port, settings=_settings(args), allow_remote=args.allow_remote
    )


def cmd_scan(args: argparse.Namespace, rest: Sequence[str]) -> int:
    """Run the guard pipeline over lines of input (``airlock --policy FILE scan`` passes the policy on)."""
    from ui.scan import scan_main

    rest = list(rest)
    if args.policy and not any(a == "--policy" or a.startswith("--policy=") for a in rest):
        rest = ["--policy", args.policy, *rest]
    return scan_main(rest)


# The benchmarks that own a module (``main(argv) -> int``), with their one-line help; ``layers``
# and ``turn`` (and ``all``, both) are run below.
_BENCHES: dict[str, tuple[str, str]] = {
    "fuzz": ("evals.fuzz", "adversarial shapes up to the limits: the slowest input of every layer (exit 1 > 100 ms)"),
    "api": ("evals.bench_api", "concurrent SSE clients against `airlock serve`, and the same turns in process"),
    "load": ("evals.bench_load", "N sessions (closed/open loop, 1+ processes): turns/s, p50/p95/p99, CPU, DB time"),
    "growth": ("evals.bench_growth", "one thread to K turns: checkpoint bytes and latency per turn, old and new"),
    "lists": ("evals.bench_lists", "the thread list (500 threads x 20 turns) and the inbox (10,000 pending)"),
    "audit": ("evals.bench_audit", "audit appends from 1 and 2 processes: stream chains beside the old global lock"),
    "pii": ("evals.bench_pii_turn", "analyzer calls and PII CPU per guarded turn (each distinct text analysed once)"),
}


def cmd_bench(args: argparse.Namespace, rest: Sequence[str]) -> int:
    """Run the benchmarks: ``airlock bench [layers|turn|<module bench>|all] [options of that benchmark]``."""
    import importlib

    rest = list(rest)
    which = rest.pop(0) if rest and rest[0] in ("layers", "turn", "all", *_BENCHES) else "all"
    if which in _BENCHES:
        return int(importlib.import_module(_BENCHES[which][0]).main(rest) or 0)
    if rest and rest[0] in ("-h", "--help") and which == "all":
        names = "|".join(("layers", "turn", *_BENCHES, "all"))
        lines = [
            "  layers  per-layer p50/p95/max of the guard pipeline, with Presidio's defaults as baseline",
            "  turn    one guarded turn end to end (offline planner, Postgres), with and without layers 2-5",
            *(f"  {name:<7} {text}" for name, (_, text) in _BENCHES.items()),
            "  all     layers and turn (default)",
        ]
        print(f"usage: airlock bench [{names}] [options]\n\n" + "\n".join(lines) + "\n\n"
              f"`airlock bench layers --help` ({', '.join(('turn', *_BENCHES))}) lists a benchmark's options.")
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
            from graph.runtime import prepare_database

            applied = migrate(pool)
            # The rest of what start-up needs the owner for, so the app may log in as airlock_app alone.
            prepare_database(url, check_member=False)
            print(f"applied: {applied or 'nothing (up to date)'}")
        else:
            from graph.db import applied_domain_migrations, domain_migrations
            from graph.plugins import load_plugin

            done = set(applied_migrations(pool))
            for m in available_migrations():
                print(f"{m.version:03d}_{m.name}: {'applied' if m.version in done else 'pending'}")
            plugin = load_plugin()
            done = set(applied_domain_migrations(pool, plugin.name))
            for m in domain_migrations(plugin):
                print(f"{plugin.name}/{m.version:03d}_{m.name}: {'applied' if m.version in done else 'pending'}")
    finally:
        pool.close()
    return 0


def _when(text: str) -> datetime:
    """Parse an ISO date or date-time; one without a zone is UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date or date-time (e.g. 2026-12-01T09:00Z)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def cmd_audit(args: argparse.Namespace) -> int:
    """Verify, anchor, export or list the audit log."""
    from graph.db import open_pool, resolve_database_url
    from graph.runtime import prepare_database
    from nodes.audit import AuditLog
    from nodes.audit_key import APP_ROLE, load_audit_key

    settings = _settings(args)
    key = load_audit_key(data_dir=settings.data_dir, generate=settings.database_url is None)
    if args.audit_command == "verify" and args.file:
        report = AuditLog.verify_export(Path(args.file), key=key)
        print(json.dumps(report.to_dict()))
        return 0 if report.ok else 1
    if args.audit_command == "export" and not args.out:
        print("airlock audit export: --out FILE is required", file=sys.stderr)
        return 2
    url = resolve_database_url(args.database_url, data_dir=settings.data_dir)
    prepare_database(url)
    pool = open_pool(url, max_size=2, role=APP_ROLE)
    try:
        audit = AuditLog(pool=pool, key=key, anchors_path=settings.anchors_file)
        if args.audit_command == "verify":
            report = audit.verify(seal=not args.no_anchor)
            print(json.dumps(report.to_dict()))
            return 0 if report.ok else 1
        if args.audit_command == "anchor":
            anchors = audit.anchor()
            print(json.dumps({"count": sum(a.count for a in anchors), "streams": len(anchors),
                              "anchors": [{"stream": a.stream, "seq": a.seq, "head_hash": a.head_hash, "ts": a.ts}
                                          for a in anchors],
                              "file": str(audit.anchors_path)}))
            return 0
        if args.audit_command == "export":
            count = audit.export(Path(args.out), since=args.since, until=args.until)
            print(json.dumps({"events": count, "out": args.out}))
            return 0
        for event in audit.events(thread_id=args.thread, limit=args.limit):
            print(json.dumps({"stream": event.stream, "seq": event.seq, "id": event.id, "ts": event.ts.isoformat(),
                              "type": event.event_type,
                              "actor": event.actor, "thread": event.thread_id, "tool": event.tool,
                              "payload": event.payload}, default=str))
    finally:
        pool.close()
    return 0


def cmd_privacy(args: argparse.Namespace) -> int:
    """Erase a customer's personal data (``privacy forget --customer ID``)."""
    from graph.privacy import forget_customer

    services = _services(args)
    try:
        report = forget_customer(services, args.customer)
    finally:
        services.close()
    print(report.summary())
    return 0


EVALS = {
    "quality": ("evals.quality", "guard-pipeline confusion matrices on the held-out split",
                ("sklearn", "scipy", "threadpoolctl")),
    "pii": ("evals.pii_eval", "PII recall and precision per entity type", ()),
    "heldout": ("evals.heldout", "the app's input guard on held-out sets, per set, language and technique",
                ("sklearn", "scipy", "threadpoolctl")),
    "replay": ("evals.tau2_replay", "τ² tasks replayed through the guarded graph (Postgres): false denials, "
               "final states, violating variants", ()),
}


def cmd_eval(args: argparse.Namespace, rest: Sequence[str]) -> int:
    """Run the quality reports: ``airlock eval [quality|pii|heldout|replay|all] [options of that report]``."""
    import importlib.util
    import subprocess

    rest = list(rest)
    which = rest.pop(0) if rest and rest[0] in (*EVALS, "all") else "all"
    if which == "all" and rest:
        if rest[0] in ("-h", "--help"):
            print("usage: airlock eval [quality|pii|heldout|replay|all] [options]\n\n"
                  + "\n".join(f"  {name:<8} {desc}" for name, (_, desc, _) in EVALS.items())
                  + "\n  all      every one, each with its defaults (default)\n\n"
                  "`airlock eval NAME --help` lists that report's options.")
            return 0
        # Each report has its own options: they go to the one named, never to both.
        print("airlock eval: name the report the options are for: airlock eval quality|pii|heldout|replay "
              f"{' '.join(rest)}", file=sys.stderr)
        return 2
    code = 0
    for name in (EVALS if which == "all" else (which,)):
        module, _, needs = EVALS[name]
        missing = [m for m in needs if importlib.util.find_spec(m) is None]
        if missing:
            print(f"airlock eval {name}: needs {', '.join(missing)} (the dev extras): "
                  "pip install -e '.[dev]'", file=sys.stderr)
            code |= 2
            continue
        code |= subprocess.call([sys.executable, "-m", module, *(rest if which != "all" else [])])
    return code


def cmd_policy(args: argparse.Namespace) -> int:
    """Validate a policy file."""
    from graph.plugins import DomainConfigError, load_plugin
    from graph.policy import PolicyError, load_policy
    from graph.runtime import check_policy_domain

    try:
        # The domain the file names (domain:), else AIRLOCK_DOMAIN, else the default.
        plugin = load_plugin(policy_path=args.file)
        path = args.file or plugin.policy_path
        # The same checks as start-up (graph.runtime): tools, argument and fact shapes, layers.
        policy = load_policy(path, known_tools=plugin.tools, facts=plugin.neutral_facts())
        check_policy_domain(policy, plugin, path)
    except (PolicyError, DomainConfigError) as exc:
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
    parser.add_argument("--policy", help="policy YAML (default: $AIRLOCK_POLICY, else the served domain's policy; "
                        "the domain is $AIRLOCK_DOMAIN, else the policy's domain:, else airline)")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="run the Gradio app (chat, reviewer inbox, audit); --domain retail serves the store",
        description="Run the Gradio app on 127.0.0.1 (chat, reviewer inbox, audit) for one domain: "
                    "`airlock demo` serves the airline, `airlock demo --domain retail` the store.",
        epilog="Web security settings (README): AIRLOCK_ALLOWED_ORIGINS (required beyond loopback), "
               "AIRLOCK_SESSION_IDLE, AIRLOCK_SESSION_MAX, AIRLOCK_MAX_BODY_BYTES, AIRLOCK_LOGIN_LIMIT_USER, "
               "AIRLOCK_LOGIN_LIMIT_ADDRESS, AIRLOCK_LOGIN_WINDOW, AIRLOCK_MAX_BROWSER_SESSIONS.")
    demo.add_argument("--domain", metavar="NAME",
                      help="the domain to serve: a package under tools/ (airline, retail) or a dotted module "
                           "path; its demo accounts and example prompts come with it (default: "
                           "$AIRLOCK_DOMAIN, else the policy's domain:, else airline)")
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    demo.add_argument("--allow-remote", action="store_true",
                      help="allow a non-loopback address (requires configured accounts and "
                           "AIRLOCK_ALLOWED_ORIGINS)")

    sub.add_parser("scan", help="run the guard pipeline over lines of text or JSONL (see `airlock scan --help`)",
                   add_help=False)
    sub.add_parser("bench", help="latency benchmarks (see `airlock bench --help`)", add_help=False)
    sub.add_parser("review", help="terminal reviewer: list, show, approve, reject, edit, sweep "
                   "(see `airlock review --help`)", add_help=False)
    sub.add_parser("serve", help="HTTP API with SSE turns, JWT and rate limits; Gradio under /ui "
                   "(see `airlock serve --help`)", add_help=False)
    sub.add_parser("accounts", help="hash a password or check an accounts file", add_help=False)
    sub.add_parser("outbox", help="notification worker and dead letters: run, list, retry, stats "
                   "(see `airlock outbox --help`)", add_help=False)
    sub.add_parser("eval", help="quality reports: `airlock eval [quality|pii|heldout|replay|all]` "
                   "(see `airlock eval --help`)", add_help=False)

    db = sub.add_parser("db", help="database maintenance")
    db.add_argument("db_command", choices=["migrate", "status", "stop"],
                    help="migrate: apply migrations; status: list them; stop: stop the embedded Postgres")

    audit = sub.add_parser(
        "audit", help="verify, anchor, export or list the keyed, hash-chained audit log",
        description="verify: check the chain (with the audit key), every signed anchor and the table guards; "
                    "exit 1 naming the first bad event; 'unanchored' counts the events after the last anchor, "
                    "which cannot be proven complete (a clean check then anchors them). "
                    "anchor: sign the chain's head now. export: write events "
                    "(JSON lines, with a signed header and the anchors) for an offline verify --file. "
                    "list: the newest events. The key: AIRLOCK_AUDIT_KEY, AIRLOCK_AUDIT_KEY_FILE or "
                    "<AIRLOCK_DATA_DIR>/audit.key.")
    audit.add_argument("audit_command", choices=["verify", "anchor", "export", "list"])
    audit.add_argument("--file", help="verify: an export file instead of the database")
    audit.add_argument("--no-anchor", action="store_true",
                       help="verify: do not anchor the checked events (by default a clean check anchors them, so "
                            "the next one can prove none was deleted)")
    audit.add_argument("--since", type=_when, help="export: events at or after this ISO date/time (default: all)")
    audit.add_argument("--until", type=_when, help="export: events before this ISO date/time (default: now)")
    audit.add_argument("--out", help="export: the file to write")
    audit.add_argument("--thread", help="only this thread (list)")
    audit.add_argument("--limit", type=int, default=50, help="number of events (list)")

    privacy = sub.add_parser("privacy", help="data protection: erase a customer's personal data")
    privacy_sub = privacy.add_subparsers(dest="privacy_command", required=True)
    forget = privacy_sub.add_parser(
        "forget", help="erase a customer's conversations, vault entries, feedback, reviews and tool outcomes",
        description="Erase everything personal the app keeps about a customer: their threads' checkpoints "
                    "and PII vault entries, feedback, review cases, tool outcomes and idempotency results, "
                    "and the domain's own record fields. The audit log (masked) stays verifiable.")
    forget.add_argument("--customer", required=True, help="the customer (account) id, as the domain names it")

    policy = sub.add_parser("policy", help="validate a policy file")
    policy.add_argument("file", nargs="?",
                        help="policy YAML (default: the served domain's policy, $AIRLOCK_DOMAIN else airline)")

    sub.add_parser("graph", help="print the graph as a Mermaid diagram")
    return parser


def cmd_review(args: argparse.Namespace, rest: Sequence[str]) -> int:
    """Run the terminal reviewer (``--database-url`` and ``--policy`` before ``review`` apply to it)."""
    from ui.review_cli import review_main

    return review_main(list(rest), settings=_settings(args))


def cmd_serve(args: argparse.Namespace, rest: Sequence[str]) -> int:
    """Run the HTTP API."""
    from ui.serve import serve_main

    return serve_main(list(rest))


def cmd_outbox(args: argparse.Namespace, rest: Sequence[str]) -> int:
    """Run the notification outbox commands (``--database-url`` before ``outbox`` applies to them)."""
    from ui.outbox_cli import outbox_main

    url = ["--database-url", args.database_url] if getattr(args, "database_url", None) else []
    return outbox_main([*url, *rest])


def cmd_accounts(args: argparse.Namespace, rest: Sequence[str]) -> int:
    """Manage accounts."""
    from ui.auth import accounts_main

    return accounts_main(list(rest))


_GLOBAL_VALUED = ("--database-url", "--policy")
PASSTHROUGH = {"serve": cmd_serve, "scan": cmd_scan, "bench": cmd_bench, "review": cmd_review,
               "accounts": cmd_accounts, "eval": cmd_eval, "outbox": cmd_outbox}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Sub-commands with their own parsers get the rest of the line untouched, and the global
    # options given before them (`airlock --database-url URL review ...`).
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in PASSTHROUGH:
            parser = build_parser()
            ns = parser.parse_args(argv[:i] + [token])
            return PASSTHROUGH[token](ns, argv[i + 1:])
        if token in _GLOBAL_VALUED:
            i += 2  # the option and its value
            continue
        if not token.startswith("-"):
            break
        i += 1
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"demo": cmd_demo, "db": cmd_db, "audit": cmd_audit, "policy": cmd_policy, "graph": cmd_graph,
                "privacy": cmd_privacy}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 130
    except AirlockError as exc:  # a clear one-line error instead of a traceback (a bug keeps its traceback)
        print(f"airlock: {exc}", file=sys.stderr)
        return 2

if __name__ == "__main__":
    sys.exit(main())
