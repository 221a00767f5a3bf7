"""Login throttling shared by every process through Postgres (table ``login_attempts``).

Two counters per fixed window: one per (username, client address) pair and one per client
address. An attempt reserves a slot in both with one ``INSERT ... ON CONFLICT DO UPDATE ...
RETURNING`` *before* the password is hashed, so a hundred concurrent guesses are counted one by
one and the guesses over the limit are refused unchecked. A successful login gives its slots back
(the pair's count starts again), so a user who finally types the right password is not penalised.

There is deliberately no per-username lockout: a stranger who guesses ``sam``'s password from
their own address exhausts only their own pair and address, and ``sam`` still signs in from his.
Failed logins are audited at most three times per pair and window (the first failure, and the
attempts that engaged the pair's and the address's limits), so unauthenticated requests cannot
grow the audit log without bound.
When the database does not answer within ``connect_timeout_s`` the login fails at once with
:class:`LoginUnavailableError` instead of waiting for the pool.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from psycopg import Error as PsycopgError
from psycopg_pool import ConnectionPool, PoolTimeout

from graph.errors import AirlockError
from ui.auth import Account, Accounts

__all__ = [
    "LoginGate",
    "LoginSlot",
    "LoginThrottle",
    "LoginUnavailableError",
    "ThrottleLimits",
]


class LoginUnavailableError(AirlockError, RuntimeError):
    """The throttle's database did not answer: sign-in is refused at once, with this reason."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ThrottleLimits:
    """How many login attempts a window allows.

    Attributes:
        per_pair: Failed attempts per (username, client address) in one window.
        per_address: Failed attempts per client address (any usernames) in one window.
        window_s: The window length in seconds.
        connect_timeout_s: How long a login waits for a database connection before failing.
    """

    per_pair: int = 5
    per_address: int = 50
    window_s: int = 300
    connect_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        """Refuse limits that disable the throttle or lock everyone out."""
        if not 1 <= self.per_pair <= 1000:
            raise ValueError("the per-user login limit must be between 1 and 1000")
        if not self.per_pair <= self.per_address <= 100_000:
            raise ValueError("the per-address login limit must be between the per-user limit and 100000")
        if not 10 <= self.window_s <= 86_400:
            raise ValueError("the login throttle window must be between 10 s and 24 h")
        if not 0.1 <= self.connect_timeout_s <= 30:
            raise ValueError("the login database timeout must be between 0.1 s and 30 s")


@dataclass(frozen=True, slots=True)
class LoginSlot:
    """The outcome of reserving an attempt.

    Attributes:
        allowed: Whether the password may be checked.
        pair_attempts: Attempts of this (username, address) in the window, this one included.
        address_attempts: Attempts of this address in the window, this one included.
        window_start: The window (epoch seconds) the slot was taken in.
        audit: What to audit if the attempt fails: ``"first"`` (the first failure of the window),
            ``"throttled"`` (the attempt that engaged the throttle) or ``"none"``.
    """

    allowed: bool
    pair_attempts: int
    address_attempts: int
    window_start: int
    audit: Literal["first", "throttled", "none"]


def _digest(kind: str, *parts: str) -> str:
    return kind + ":" + hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()


_RESERVE = """
INSERT INTO login_attempts (key, window_start, attempts)
VALUES (%(pair)s, to_timestamp(%(window)s), 1), (%(address)s, to_timestamp(%(window)s), 1)
ON CONFLICT (key, window_start) DO UPDATE SET attempts = login_attempts.attempts + 1
RETURNING key, attempts
"""
_RELEASE = """
UPDATE login_attempts SET attempts = CASE WHEN key = %(pair)s THEN 0 ELSE GREATEST(attempts - 1, 0) END
WHERE key IN (%(pair)s, %(address)s) AND window_start = to_timestamp(%(window)s)
"""
_PURGE = "DELETE FROM login_attempts WHERE window_start < to_timestamp(%(before)s)"


class LoginThrottle:
    """Reserve and release login attempts in Postgres (see the module docstring)."""

    def __init__(self, *, pool: ConnectionPool, limits: ThrottleLimits | None = None) -> None:
        self.pool = pool
        self.limits = limits or ThrottleLimits()

    def _keys(self, username: str, address: str) -> dict[str, str]:
        return {"pair": _digest("pair", username.strip().lower(), address),
                "address": _digest("address", address)}

    def reserve(self, username: str, address: str, *, now: float) -> LoginSlot:
        """Count one attempt of ``username`` from ``address`` and say whether it may be checked.

        Args:
            username: The username as typed.
            address: The client's address (the socket peer; forwarded headers are not trusted).
            now: The time (epoch seconds) that picks the window.

        Returns:
            The slot.

        Raises:
            LoginUnavailableError: If the database does not answer in time.
        """
        window = int(now // self.limits.window_s) * self.limits.window_s
        keys = self._keys(username, address)
        try:
            with self.pool.connection(timeout=self.limits.connect_timeout_s) as conn:
                rows = conn.execute(_RESERVE, {**keys, "window": window}).fetchall()
                if window % (self.limits.window_s * 12) == 0:  # now and then, forget old windows
                    conn.execute(_PURGE, {"before": window - self.limits.window_s})
        except (PoolTimeout, PsycopgError) as exc:
            raise LoginUnavailableError(
                f"sign-in is unavailable: the database did not answer within "
                f"{self.limits.connect_timeout_s:g} s ({type(exc).__name__}); try again shortly"
            ) from exc
        counts = {str(r["key"]): int(r["attempts"]) for r in rows}  # type: ignore[call-overload]
        pair, by_address = counts[keys["pair"]], counts[keys["address"]]
        allowed = pair <= self.limits.per_pair and by_address <= self.limits.per_address
        audit: Literal["first", "throttled", "none"] = "none"
        if pair == 1:
            audit = "first"
        elif pair == self.limits.per_pair + 1 or by_address == self.limits.per_address + 1:
            audit = "throttled"
        return LoginSlot(allowed=allowed, pair_attempts=pair, address_attempts=by_address,
                         window_start=window, audit=audit)

    def release(self, username: str, address: str, slot: LoginSlot) -> None:
        """Give a successful login's slots back: its pair starts again, its address gets one back."""
        try:
            with self.pool.connection(timeout=self.limits.connect_timeout_s) as conn:
                conn.execute(_RELEASE, {**self._keys(username, address), "window": slot.window_start})
        except (PoolTimeout, PsycopgError):
            pass  # the login succeeded; an uncounted release only makes the throttle stricter


class LoginGate:
    """Check a login: throttle, password, audit (bounded), in that order.

    Args:
        accounts: The accounts file.
        throttle: The shared throttle.
        audit: ``audit(event, actor, payload)``; called for known usernames only (a typo in the
            username field may be a password), and for failures at most as
            :class:`LoginSlot.audit` allows.
        clock: Epoch seconds (picks the throttle window).
    """

    def __init__(self, *, accounts: Accounts, throttle: LoginThrottle,
                 audit: Callable[[str, str, dict[str, Any]], object],
                 clock: Callable[[], float] = time.time) -> None:
        self.accounts = accounts
        self.throttle = throttle
        self.audit = audit
        self.clock = clock

    def check(self, username: str, password: str, address: str) -> Account | None:
        """Return the account if the login may proceed and the password is right, else None.

        Raises:
            LoginUnavailableError: If the database does not answer (sign-in fails at once).
        """
        slot = self.throttle.reserve(username, address, now=self.clock())
        known = self.accounts.get(username)
        if not slot.allowed:
            if known is not None and slot.audit != "none":
                self.audit("auth.login", known.username,
                           {"ok": False, "throttled": True, "attempts": slot.pair_attempts})
            return None
        account = self.accounts.authenticate(username, password)
        if account is not None:
            self.throttle.release(username, address, slot)
            self.audit("auth.login", account.username, {"ok": True})
        elif known is not None and slot.audit == "first":
            self.audit("auth.login", known.username, {"ok": False, "throttled": False, "attempts": 1})
        return account
