"""airlock user interfaces: the `airlock` command and the Gradio app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from graph.lazy import lazy_exports

if TYPE_CHECKING:
    from ui.auth import Account, Accounts, AccountsError, load_accounts
    from ui.cli import main
    from ui.login_throttle import LoginGate, LoginThrottle
    from ui.security import WebSecuritySettings
    from ui.serve import build_server_app

__all__ = [
    "Account",
    "Accounts",
    "AccountsError",
    "LoginGate",
    "LoginThrottle",
    "WebSecuritySettings",
    "build_server_app",
    "load_accounts",
    "main",
]

# Loaded on first use (PEP 562), so importing the package stays cheap and free of cycles.
_EXPORTS = {
    "Account": "ui.auth",
    "Accounts": "ui.auth",
    "AccountsError": "ui.auth",
    "LoginGate": "ui.login_throttle",
    "LoginThrottle": "ui.login_throttle",
    "WebSecuritySettings": "ui.security",
    "build_server_app": "ui.serve",
    "load_accounts": "ui.auth",
    "main": "ui.cli",
}


__getattr__ = lazy_exports(__name__, _EXPORTS)
