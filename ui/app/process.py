"""The process behind ``airlock demo``: checks, services, the review sweeper and the server."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Mapping

import gradio as gr

from graph.runtime import AirlockServices, AirlockSettings
from graph.service import (
    AirlockApp,
)
from ui.app.common import (
    SWEEP_EVERY_S,
)
from ui.app.layout import AirlockUI
from ui.app.render import (
    demo_accounts_note,
)
from ui.auth import (
    AccountsError,
    UnsafeListenError,
    check_listen_address,
)
from ui.look import CSS
from ui.security import ConfigError, WebSecuritySettings, serve

__all__ = ["launch", "port_problem", "start_sweeper", "theme"]

log = logging.getLogger(__name__)


def theme() -> gr.themes.Base:
    """Return the app's Gradio theme."""
    # System fonts only: the default theme pulls web fonts from the internet.
    system = ["ui-sans-serif", "system-ui", "sans-serif"]
    mono = ["ui-monospace", "SFMono-Regular", "monospace"]
    return gr.themes.Soft(font=system, font_mono=mono)


def start_sweeper(app: AirlockApp, stop: threading.Event) -> threading.Thread | None:
    """Apply expired reviews' timeout actions in the background (safe in several processes)."""
    sweep = getattr(app, "sweep_expired", None)
    if sweep is None:
        return None

    def loop() -> None:
        while not stop.wait(SWEEP_EVERY_S):
            try:
                sweep()
            except Exception:
                log.exception("review sweeper failed")

    thread = threading.Thread(target=loop, name="airlock-review-sweeper", daemon=True)
    thread.start()
    return thread


def port_problem(host: str, port: int) -> str:
    """Return why the app cannot listen on ``host:port`` (empty when it can).

    Args:
        host: The address to listen on.
        port: The port.
    """
    import socket

    if not 0 < port < 65536:
        return f"PORT {port} is not a port number (1-65535)"
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return (f"PORT {port} on {host} is not free ({exc.strerror or exc}); pick another: "
                    f"make demo PORT={port + 1} (or airlock demo --port {port + 1})")
    return ""


def launch(
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    settings: AirlockSettings | None = None,
    allow_remote: bool = False,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run the app until interrupted (``airlock demo``).

    Args:
        host: The address to listen on; a non-loopback one needs ``allow_remote`` and an
            accounts file of your own in ``AIRLOCK_ACCOUNTS``.
        port: The port.
        settings: The runtime settings (default: from the environment).
        allow_remote: Whether ``--allow-remote`` was given.
        environ: The environment to read ``AIRLOCK_ACCOUNTS`` from (default ``os.environ``).

    Returns:
        The exit status (2 for a refused address or a bad accounts file).
    """
    try:
        accounts = check_listen_address(host, allow_remote=allow_remote, environ=environ)
    except (UnsafeListenError, AccountsError) as exc:
        print(f"airlock: {exc}", file=sys.stderr)
        return 2
    try:
        web = WebSecuritySettings.from_env(os.environ if environ is None else environ, host=host, port=port)
    except ConfigError as exc:
        print(f"airlock: {exc}", file=sys.stderr)
        return 2
    busy = port_problem(host, port)
    if busy:  # before anything starts: one clear line, no traceback
        print(f"airlock: {busy}", file=sys.stderr)
        return 2
    services = AirlockServices.start(settings or AirlockSettings.from_env())
    stop = threading.Event()
    try:
        app = AirlockApp(services=services)
        ui = AirlockUI(app=app, accounts=accounts, login_limits=web.login)
        blocks = ui.build()
        start_sweeper(app, stop)
        demo_note = demo_accounts_note(accounts)
        print(f"airlock: model = {ui.model_label}; accounts = {accounts.path}", flush=True)
        serve(
            blocks.queue(default_concurrency_limit=16), host=host, port=port, settings=web,
            auth=ui.login, auth_message=f"<p>Sign in to airlock.</p>{demo_note}",
            show_error=True, theme=theme(), css=CSS, footer_links=[], ssr_mode=False,
            mcp_server=False, enable_monitoring=False, run_history=False,
        )
    finally:
        stop.set()
        services.close()
    return 0
