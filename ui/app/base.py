"""The app's state, identity checks and error handling, shared by every tab."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import anyio
import gradio as gr
from fastapi import HTTPException

from graph.errors import AirlockError
from graph.service import (
    AirlockApp,
    NotAllowedError,
    StaleReviewError,
)
from nodes.model.factory import describe_model
from ui.app.common import (
    _refused,
)
from ui.auth import (
    Account,
    Accounts,
)
from ui.login_throttle import LoginGate, LoginThrottle, LoginUnavailableError, ThrottleLimits
from ui.look import Describer
from ui.security import client_address

__all__: list[str] = []

log = logging.getLogger(__name__)


class _UIBase:
    """The service, the accounts and the login gate; who is signed in; errors for the page."""

    def __init__(self, *, app: AirlockApp, accounts: Accounts, gate: LoginGate | None = None,
                 login_limits: ThrottleLimits | None = None) -> None:
        self.app = app
        self.accounts = accounts
        self.gate = gate or LoginGate(
            accounts=accounts, throttle=LoginThrottle(pool=app.services.pool, limits=login_limits),
            audit=lambda event, actor, payload: self._audit(event, actor, payload=payload))
        self.model_label = describe_model(app.services.model)

    async def login(self, username: str, password: str) -> bool:
        """Check a login (Gradio's ``auth=``): throttled in Postgres, hashing off the event loop."""
        try:
            account = await anyio.to_thread.run_sync(self.gate.check, username, password, client_address())
        except LoginUnavailableError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from None
        return account is not None

    def account(self, request: gr.Request | None) -> Account:
        """Return the signed-in account of a request, or raise."""
        account = self.accounts.get(getattr(request, "username", None))
        if account is None:
            raise _refused("Please sign in.")
        return account

    def customer(self, request: gr.Request | None) -> Account:
        """Return the signed-in customer, or refuse."""
        account = self.account(request)
        if not account.is_customer:
            raise _refused("This account has no customer profile.")
        return account

    def reviewer(self, request: gr.Request | None, *, what: str = "") -> Account:
        """Return the signed-in reviewer, or refuse (and audit the refusal)."""
        account = self.account(request)
        if not account.is_reviewer:
            if what:
                self._audit("ui.refused", account.username, payload={"action": what[:64]})
            raise _refused("Only reviewers may do this.")
        return account

    def _audit(
        self, event: str, actor: str, *, payload: Mapping[str, Any], thread_id: str | None = None
    ) -> None:
        try:
            self.app.services.audit.append(event, actor=actor, thread_id=thread_id, payload=dict(payload))
        except Exception:  # the audit log must not take the UI down; the service audits decisions
            log.exception("audit append failed")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn service errors into messages for the page (never a traceback)."""
        try:
            yield
        except gr.Error:
            raise
        except NotAllowedError as exc:
            raise _refused(f"Not allowed: {exc}") from None
        except StaleReviewError as exc:
            raise _refused(f"This case is no longer pending: {exc}") from None
        except ValueError as exc:
            raise _refused(str(exc)) from None
        except AirlockError:
            # Ours, expected (a service away, a vault refusal): its words may name internals.
            log.warning("request refused", exc_info=True)
            raise gr.Error("The request could not be completed right now; please try again.",
                           print_exception=False) from None
        except Exception:  # a bug: logged with its traceback, never shown on the page
            log.exception("request failed")
            raise gr.Error("Something went wrong; the details are in the server log.",
                           print_exception=False) from None

    def _describer(self) -> Describer:
        """Return the domain's plain-language call describer (the UI knows no tool names)."""
        domain = self.app.services.domain

        def describe(tool: str, args: Mapping[str, Any]) -> str:
            return domain.describe_call(tool, args)

        return describe
