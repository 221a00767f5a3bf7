"""``airlock review``: the terminal reviewer (list, show, approve, reject, edit, sweep)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from graph.paging import DEFAULT_PAGE, MAX_PAGE

__all__ = ["review_main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="airlock review",
        description="Decide escalated cases from the terminal. Signs in with a reviewer account "
        "from the accounts file (AIRLOCK_ACCOUNTS); the password comes from a prompt, "
        "--password-stdin, or AIRLOCK_REVIEWER_PASSWORD. Without DATABASE_URL it uses the app's "
        "embedded Postgres in the app's data directory (AIRLOCK_DATA_DIR, else the checkout's .data), "
        "from any directory, and refuses when there is none.",
    )
    parser.add_argument("--user", default=os.environ.get("AIRLOCK_REVIEWER"),
                        help="reviewer username (default: $AIRLOCK_REVIEWER)")
    parser.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--database-url", help="Postgres URL (default: $DATABASE_URL, else the app's embedded one)")
    parser.add_argument("--policy", help="policy YAML (default: $AIRLOCK_POLICY, else the served domain's policy)")
    # Options that also work after the sub-command (`airlock review list --json`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON instead of text")
    sub = parser.add_subparsers(dest="review_command", required=True)
    listing = sub.add_parser(
        "list", parents=[common],
        help="pending cases for your roles, oldest due first, one page at a time with the true count",
    )
    listing.add_argument("--limit", type=int, default=DEFAULT_PAGE,
                         help=f"cases per page, 1 to {MAX_PAGE} (default {DEFAULT_PAGE})")
    listing.add_argument("--cursor", default=None,
                         help="start after the previous page (the cursor that page printed)")
    show = sub.add_parser("show", parents=[common], help="one case with its conversation and masked arguments")
    show.add_argument("id")
    approve = sub.add_parser("approve", parents=[common], help="approve a case")
    approve.add_argument("id")
    approve.add_argument("--message", default="", help="optional comment")
    reject = sub.add_parser("reject", parents=[common], help="reject a case; the message goes back to the agent")
    reject.add_argument("id")
    reject.add_argument("--message", required=True, help="why (returned to the agent)")
    edit = sub.add_parser(
        "edit", parents=[common],
        help="run the tool with edited arguments: the JSON object's keys replace the case's, the rest "
        "stay; the result passes the guardrails again. An edit that does not fit the tool is refused "
        "and the case stays pending",
    )
    edit.add_argument("id")
    edit.add_argument("--args", required=True,
                      help='the changed arguments as a JSON object in the tool\'s own names, e.g. \'{"quantity": 2}\'')
    edit.add_argument("--message", default="", help="optional comment (shown to the customer)")
    sub.add_parser("sweep", parents=[common],
                   help="apply the timeout action to expired cases (safe in several processes)")
    return parser


def _start_app(args: argparse.Namespace, settings: Any) -> Any:
    """Start the services on the app's database; refuse rather than create a new embedded one."""
    from dataclasses import replace
    from pathlib import Path

    from graph.runtime import AirlockServices, AirlockSettings
    from graph.service import AirlockApp

    settings = settings or AirlockSettings.from_env()
    overrides = {"database_url": args.database_url, "policy_path": Path(args.policy) if args.policy else None}
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    if settings.database_url is None and not (Path(settings.data_dir) / "pg" / "PG_VERSION").is_file():
        raise SystemExit(
            f"airlock review: no app database in {settings.data_dir} (no DATABASE_URL, and no embedded "
            "Postgres there). Start the app first (make demo), or set DATABASE_URL or AIRLOCK_DATA_DIR "
            "to the app's."
        )
    return AirlockApp(services=AirlockServices.start(settings))


def _sign_in(args: argparse.Namespace) -> Any:
    from ui.auth import accounts_path, load_accounts

    if not args.user:
        raise SystemExit("airlock review: give --user (or set AIRLOCK_REVIEWER)")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = os.environ.get("AIRLOCK_REVIEWER_PASSWORD") or getpass.getpass(f"password for {args.user}: ")
    account = load_accounts(accounts_path()).authenticate(args.user, password)
    if account is None or not account.is_reviewer:
        raise SystemExit("airlock review: sign-in failed (unknown user, wrong password, or not a reviewer)")
    return account


def _print(obj: Any) -> None:
    print(json.dumps(obj, default=str, indent=2))


def _print_page(page: Any, *, as_json: bool) -> None:
    """Print one page of the inbox: its cases, which of the true total they are, and the next cursor."""
    if as_json:
        _print({"items": page.items, "total": page.total, "next": page.next, "start": page.start})
        return
    for row in page.items:
        req = row["payload"]["action_requests"][0]
        print(f"{row['review_id']}  due {row['due_at']:%Y-%m-%d %H:%M}  {row['assignee']:<12} "
              f"{req['name']}: {req['description']}")
    first = page.start + 1
    if not page.items:
        print("no pending cases" if first == 1 else f"no more cases ({page.total:,} pending)")
        return
    print(f"-- {first:,}–{first + len(page.items) - 1:,} of {page.total:,} pending")
    if page.next:
        print(f"-- next page: airlock review list --limit {len(page.items)} --cursor {page.next}")


def review_main(argv: Sequence[str] | None = None, *, app: Any = None, settings: Any = None) -> int:
    """Run ``airlock review``.

    Args:
        argv: The arguments after ``review``.
        app: An application to use (tests); default: one started on ``settings``.
        settings: ``graph.runtime.AirlockSettings`` from the global options (``airlock
            --database-url URL --policy FILE review ...``); default: the environment.
    """
    args = _parser().parse_args(list(argv) if argv is not None else None)
    account = _sign_in(args) if args.review_command != "sweep" else None
    owned = app is None
    if app is None:
        app = _start_app(args, settings)
    from graph.service import InvalidCursorError, InvalidEditError, NotAllowedError, StaleReviewError

    roles = list(account.roles) if account else ["system"]
    try:
        cmd = args.review_command
        if cmd == "list":
            page = app.review_page(roles=roles, limit=args.limit, cursor=args.cursor)
            _print_page(page, as_json=args.json)
        elif cmd == "show":
            _print(app.get_review(args.id, roles=roles))
        elif cmd == "sweep":
            print(f"expired cases handled: {app.sweep_expired()}")
        else:
            edited = None
            if cmd == "edit":
                try:
                    edited = json.loads(args.args)
                except ValueError as exc:
                    print(f"airlock review: --args is not JSON: {exc}", file=sys.stderr)
                    return 2
                if not isinstance(edited, dict):
                    print("airlock review: --args must be a JSON object", file=sys.stderr)
                    return 2
            assert account is not None
            result = app.decide_review(review_id=args.id, reviewer=account.username, roles=roles,
                                       action=cmd, message=args.message, args=edited)
            print(json.dumps({"review_id": args.id, "decision": cmd, "reply": result.reply,
                              "pending": [p.kind for p in result.pending]}, default=str))
    except (InvalidEditError, InvalidCursorError) as exc:
        print(f"airlock review: {exc}", file=sys.stderr)
        return 2
    except (NotAllowedError, StaleReviewError) as exc:
        print(f"airlock review: {exc}", file=sys.stderr)
        return 1
    finally:
        if owned:
            app.services.close()
    return 0
