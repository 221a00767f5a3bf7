"""``airlock review``: the terminal reviewer (list, show, approve, reject, edit, sweep)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["review_main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="airlock review",
        description="Decide escalated cases from the terminal. Signs in with a reviewer account "
        "from the accounts file (AIRLOCK_ACCOUNTS); the password comes from a prompt, "
        "--password-stdin, or AIRLOCK_REVIEWER_PASSWORD.",
    )
    parser.add_argument("--user", default=os.environ.get("AIRLOCK_REVIEWER"),
                        help="reviewer username (default: $AIRLOCK_REVIEWER)")
    parser.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    sub = parser.add_subparsers(dest="review_command", required=True)
    sub.add_parser("list", help="pending cases for your roles, oldest due first")
    show = sub.add_parser("show", help="one case with its conversation and masked arguments")
    show.add_argument("id")
    approve = sub.add_parser("approve", help="approve a case")
    approve.add_argument("id")
    approve.add_argument("--message", default="", help="optional comment")
    reject = sub.add_parser("reject", help="reject a case; the message goes back to the agent")
    reject.add_argument("id")
    reject.add_argument("--message", required=True, help="why (returned to the agent)")
    edit = sub.add_parser("edit", help="run the tool with edited arguments (they pass the guardrails again)")
    edit.add_argument("id")
    edit.add_argument("--args", required=True, help="the edited arguments as a JSON object")
    edit.add_argument("--message", default="", help="optional comment")
    sub.add_parser("sweep", help="apply the timeout action to expired cases (safe in several processes)")
    return parser


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


def _print(obj: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, default=str, indent=2))
        return
    if isinstance(obj, list):
        for row in obj:
            req = row["payload"]["action_requests"][0]
            print(f"{row['review_id']}  due {row['due_at']:%Y-%m-%d %H:%M}  {row['assignee']:<12} "
                  f"{req['name']}: {req['description']}")
        if not obj:
            print("no pending cases")
        return
    print(json.dumps(obj, default=str, indent=2))


def review_main(argv: Sequence[str] | None = None, *, app: Any = None) -> int:
    """Run ``airlock review``."""
    args = _parser().parse_args(list(argv) if argv is not None else None)
    account = _sign_in(args) if args.review_command != "sweep" else None
    owned = app is None
    if app is None:
        from graph.runtime import AirlockServices
        from graph.service import AirlockApp

        app = AirlockApp(services=AirlockServices.start())
    from graph.service import NotAllowedError, StaleReviewError

    roles = list(account.roles) if account else ["system"]
    try:
        cmd = args.review_command
        if cmd == "list":
            _print(app.list_reviews(roles=roles), args.json)
        elif cmd == "show":
            _print(app.get_review(args.id, roles=roles), True)
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
    except (NotAllowedError, StaleReviewError) as exc:
        print(f"airlock review: {exc}", file=sys.stderr)
        return 1
    finally:
        if owned:
            app.services.close()
    return 0
