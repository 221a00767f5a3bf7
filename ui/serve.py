"""``airlock serve``: the HTTP API (and the Gradio app under ``/ui``) in one uvicorn process."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

from graph.errors import AirlockError

__all__ = ["build_server_app", "serve_main"]

log = logging.getLogger(__name__)


def build_server_app(*, services, settings, accounts=None, web=None, host="127.0.0.1", port=8000):
    """Return (ASGI app, stop event): the API over the services, with the Gradio app under /ui if asked.

    The Gradio app runs behind the same web-security middleware as ``airlock demo`` (Host and
    origin checks, CSRF tokens, CSP and framing headers, session limits, the body limit), given
    by ``web`` (a :class:`ui.security.WebSecuritySettings`; required with ``accounts``).
    """
    from graph.service import AirlockApp
    from ui.api import create_api

    app = AirlockApp(services=services)
    api: Any = create_api(app=app, settings=settings)
    stop = threading.Event()
    notify = services.settings.notify
    if notify.enabled and notify.worker_in_serve:
        from graph.outbox import OutboxWorker

        # Every process may run one: rows are leased with FOR UPDATE SKIP LOCKED.
        OutboxWorker(pool=services.pool, settings=notify, contacts=services.domain).start(stop)
        log.info("outbox worker started (%s)", notify.describe())
    if settings.mount_ui and accounts is not None:
        from ui.app import AirlockUI, theme
        from ui.look import CSS
        from ui.security import PrefixDispatch, secure_gradio_app

        if web is None:
            raise AirlockError("the Gradio app needs its web-security settings")
        ui = AirlockUI(app=app, accounts=accounts, login_limits=web.login)
        secured = secure_gradio_app(
            ui.build().queue(default_concurrency_limit=16), host=host, port=port, settings=web,
            auth=ui.login, auth_message="<p>Sign in to airlock.</p>", show_error=True, theme=theme(), css=CSS,
            footer_links=[], ssr_mode=False, mcp_server=False, enable_monitoring=False, run_history=False,
        )
        api = PrefixDispatch(outer=api, inner=secured, prefix="/ui")
    from ui.app import start_sweeper

    # Expired reviews get their timeout action with or without the UI; claims use SKIP LOCKED,
    # so every process may sweep.
    start_sweeper(app, stop)
    return api, stop


def serve_main(argv: Sequence[str] | None = None) -> int:
    """Run ``airlock serve``.

    Args:
        argv: The arguments after ``serve``.

    Returns:
        The exit status (2 for bad settings or a refused address).
    """
    parser = argparse.ArgumentParser(
        prog="airlock serve",
        description="Serve the HTTP API (JWT, SSE turns, rate limits; OpenAPI at /docs) and the Gradio app "
                    "under /ui; with notifications configured, also an outbox worker. Settings come from the "
                    "environment: see the README (AIRLOCK_JWT_*, AIRLOCK_API_*, AIRLOCK_NOTIFY_*, AIRLOCK_SMTP_*, "
                    "AIRLOCK_OUTBOX_*, REDIS_URL, DATABASE_URL).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a non-loopback address (the mounted Gradio app needs AIRLOCK_ACCOUNTS)")
    parser.add_argument("--no-ui", action="store_true", help="do not mount the Gradio app")
    parser.add_argument("--database-url", help="Postgres URL (default: $DATABASE_URL, else embedded)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(list(argv) if argv is not None else None)

    import uvicorn

    from graph.runtime import AirlockServices, AirlockSettings
    from nodes.metrics import init_metrics
    from ui.api import ServeSettings
    from ui.auth import check_listen_address

    try:
        runtime = AirlockSettings.from_env(database_url=args.database_url)
        settings = ServeSettings.from_env(mount_ui=False if args.no_ui else None)
        from ui.auth import is_loopback

        accounts = web = None
        if settings.mount_ui:
            from ui.security import WebSecuritySettings

            try:
                # /ui sits behind ui/security.py's middleware, as `airlock demo` does: beyond
                # loopback it needs AIRLOCK_ALLOWED_ORIGINS and an accounts file of your own.
                web = WebSecuritySettings.from_env(os.environ, host=args.host, port=args.port)
                accounts = check_listen_address(args.host, allow_remote=args.allow_remote)
            except AirlockError as exc:
                raise AirlockError(f"{exc} (or pass --no-ui to serve the API alone)") from None
        elif not args.allow_remote and not is_loopback(args.host):
            raise AirlockError(f"refusing to listen on {args.host} without --allow-remote")
    except (AirlockError, ValueError) as exc:
        print(f"airlock: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper())
    init_metrics()
    services = AirlockServices.start(runtime)
    api, stop = build_server_app(services=services, settings=settings, accounts=accounts, web=web,
                                 host=args.host, port=args.port)
    try:
        ui_note = ", UI /ui" if accounts is not None else ""
        store = "redis" if settings.redis_url else "memory"
        print(f"airlock: serving on http://{args.host}:{args.port} (API /v1, docs /docs{ui_note}; "
              f"rate limits in {store})", flush=True)
        uvicorn.run(api, host=args.host, port=args.port, log_level=args.log_level,
                    proxy_headers=settings.trust_proxy, forwarded_allow_ips="*" if settings.trust_proxy else None,
                    timeout_graceful_shutdown=10)
    finally:
        stop.set()
        services.close()
    return 0
