"""Login throttling in Postgres, session expiry, settings and per-tab state (issue 9, items 5 and 9).

The throttle runs against a real database; "two processes" are two pools, each its own
connections, so the counting is shown to be atomic in the database, not in a Python lock.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import HTTPException
from psycopg_pool import ConnectionPool

from graph.db import open_pool
from ui.auth import Account, Accounts, hash_password, load_accounts
from ui.login_throttle import LoginGate, LoginThrottle, LoginUnavailableError, ThrottleLimits
from ui.security import (
    ConfigError,
    SessionRegistry,
    WebSecuritySettings,
    parse_duration,
    reap_browser_state,
)

PW = "correct horse battery staple"
HASH = hash_password(PW)


def accounts_file(tmp_path: Path) -> Accounts:
    path = tmp_path / "accounts.yaml"
    path.write_text(f"""\
accounts:
  - username: sam
    password_hash: "{HASH}"
    roles: [reviewer, supervisor]
""", encoding="utf-8")
    return load_accounts(path)


class CountingAccounts:
    """Real accounts; counts how many passwords were actually checked."""

    def __init__(self, accounts: Accounts) -> None:
        self.inner = accounts
        self.checked = 0
        self._lock = threading.Lock()

    def get(self, username: str | None) -> Account | None:
        return self.inner.get(username)

    def authenticate(self, username: str, password: str) -> Account | None:
        with self._lock:
            self.checked += 1
        return self.inner.authenticate(username, password)


def gate(pool: ConnectionPool, accounts: Any, events: list[tuple[str, str, dict[str, Any]]],
         *, now: float = 1_000_000.0, **limits: Any) -> LoginGate:
    return LoginGate(accounts=accounts, throttle=LoginThrottle(pool=pool, limits=ThrottleLimits(**limits)),
                     audit=lambda e, a, p: events.append((e, a, p)), clock=lambda: now)


@pytest.mark.postgres
def test_concurrent_guesses_from_two_processes_are_counted_atomically(
    database_url: str, tmp_path: Path
) -> None:
    accounts = CountingAccounts(accounts_file(tmp_path))
    events: list[tuple[str, str, dict[str, Any]]] = []
    pools = [open_pool(database_url, max_size=20), open_pool(database_url, max_size=20)]
    try:
        gates = [gate(p, accounts, events) for p in pools]
        start = threading.Barrier(100)

        def guess(n: int) -> bool:
            password = PW if n == 99 else f"guess-{n}"
            start.wait()
            return gates[n % 2].check("sam", password, "203.0.113.7") is not None

        with ThreadPoolExecutor(max_workers=100) as pool:
            results = list(pool.map(guess, range(100)))
    finally:
        for p in pools:
            p.close()
    assert accounts.checked <= 5  # 100 guesses, at most the limit were hashed
    assert sum(results) <= 1
    failures = [p for e, a, p in events if e == "auth.login" and not p["ok"]]
    # The first failure, and each limit (pair, address) as it engages: not one row per guess.
    assert 1 <= len(failures) <= 3, failures


@pytest.mark.postgres
def test_a_stranger_cannot_lock_a_reviewer_out(pool: ConnectionPool, tmp_path: Path) -> None:
    accounts = accounts_file(tmp_path)
    events: list[tuple[str, str, dict[str, Any]]] = []
    g = gate(pool, accounts, events)
    for n in range(20):
        assert g.check("sam", f"wrong-{n}", "198.51.100.9") is None
    assert g.check("sam", PW, "198.51.100.9") is None  # the guessing address is throttled ...
    assert g.check("SAM ", PW, "198.51.100.9") is None  # ... whatever the spelling
    assert g.check("sam", PW, "192.0.2.10") is not None  # ... sam's own address is not
    # The next window starts afresh for the guesser too.
    later = gate(pool, accounts, events, now=1_000_000.0 + 301)
    assert later.check("sam", PW, "198.51.100.9") is not None


@pytest.mark.postgres
def test_a_success_gives_the_slot_back_and_an_address_has_a_ceiling(pool: ConnectionPool, tmp_path: Path) -> None:
    accounts = accounts_file(tmp_path)
    events: list[tuple[str, str, dict[str, Any]]] = []
    g = gate(pool, accounts, events, per_pair=3, per_address=12)
    for _ in range(5):  # typo, typo, right: the user is never throttled
        assert g.check("sam", "typo", "192.0.2.1") is None
        assert g.check("sam", "typo", "192.0.2.1") is None
        assert g.check("sam", PW, "192.0.2.1") is not None
    # One address spraying usernames hits its own ceiling, and says so once in the audit.
    for n in range(12):
        g.check(f"user{n}", "x", "192.0.2.66")
    assert g.check("sam", PW, "192.0.2.66") is None
    assert all(a == "sam" for e, a, p in events)  # unknown usernames are never audited
    assert sum(1 for e, a, p in events if p["ok"]) == 5
    assert events[-1][2] == {"ok": False, "throttled": True, "attempts": 1}


def test_database_outage_fails_fast_with_a_clear_message(tmp_path: Path) -> None:
    dead = ConnectionPool("postgresql://postgres@127.0.0.1:1/none", min_size=0, max_size=1, open=True, timeout=30)
    try:
        g = gate(dead, accounts_file(tmp_path), [], connect_timeout_s=0.5)
        with pytest.raises(LoginUnavailableError, match=r"sign-in is unavailable.*0\.5 s"):
            g.check("sam", PW, "192.0.2.1")
        from ui.app import AirlockUI

        fake = SimpleNamespace(services=SimpleNamespace(model=SimpleNamespace(), audit=None))
        ui = AirlockUI(app=fake, accounts=accounts_file(tmp_path), gate=g)  # type: ignore[arg-type]
        with pytest.raises(HTTPException) as raised:
            asyncio.run(ui.login("sam", PW))
        assert raised.value.status_code == 503 and "sign-in is unavailable" in str(raised.value.detail)
    finally:
        dead.close()


# -- sessions ----------------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_sessions_expire_when_idle_and_absolutely() -> None:
    clock = Clock()
    tokens: dict[str, str] = {"a": "sam", "b": "sam", "stray": "sam"}
    registry = SessionRegistry(tokens=tokens, idle_s=60, max_s=300, clock=clock)
    registry.opened("a")
    registry.opened("b")
    assert not registry.alive("stray") and "stray" not in tokens  # never issued through the login
    for _ in range(5):  # "a" is used every 50 s, "b" never again
        clock.now += 50
        assert registry.alive("a")
    assert not registry.alive("b") and "b" not in tokens  # idle for 250 s
    clock.now += 51  # over 300 s after sign-in, however busy
    assert not registry.alive("a") and tokens == {}
    registry.opened("c")
    tokens["c"] = "sam"
    clock.now += 61
    assert registry.sweep() == 1 and tokens == {} and len(registry) == 0


def test_settings_are_validated() -> None:
    defaults = WebSecuritySettings.from_env({}, host="127.0.0.1", port=7860)
    assert "http://127.0.0.1:7860" in defaults.allowed_origins
    assert defaults.session_idle_s == 1800 and defaults.session_max_s == 43200
    env = {"AIRLOCK_SESSION_IDLE": "15m", "AIRLOCK_SESSION_MAX": "8h", "AIRLOCK_MAX_BODY_BYTES": "65536",
           "AIRLOCK_ALLOWED_ORIGINS": "https://airlock.example.com, http://10.0.0.5:7860/",
           "AIRLOCK_LOGIN_LIMIT_USER": "3", "AIRLOCK_LOGIN_WINDOW": "10m"}
    custom = WebSecuritySettings.from_env(env, host="0.0.0.0", port=7860)
    assert custom.allowed_origins == ("https://airlock.example.com", "http://10.0.0.5:7860")
    assert custom.allowed_hosts == {"airlock.example.com", "10.0.0.5:7860"}
    assert (custom.session_idle_s, custom.session_max_s, custom.max_body_bytes) == (900, 28800, 65536)
    assert (custom.login.per_pair, custom.login.window_s) == (3, 600)
    bad = [
        ({}, "0.0.0.0", "AIRLOCK_ALLOWED_ORIGINS is required"),
        ({"AIRLOCK_ALLOWED_ORIGINS": "*"}, "127.0.0.1", "not an origin"),
        ({"AIRLOCK_ALLOWED_ORIGINS": "https://a.example/path"}, "127.0.0.1", "not an origin"),
        ({"AIRLOCK_SESSION_IDLE": "soon"}, "127.0.0.1", "AIRLOCK_SESSION_IDLE='soon': expected a duration"),
        ({"AIRLOCK_SESSION_IDLE": "2h", "AIRLOCK_SESSION_MAX": "1h"}, "127.0.0.1", "AIRLOCK_SESSION_MAX"),
        ({"AIRLOCK_SESSION_IDLE": "10s"}, "127.0.0.1", "between 1m and 7d"),
        ({"AIRLOCK_MAX_BODY_BYTES": "1e9"}, "127.0.0.1", "AIRLOCK_MAX_BODY_BYTES=.1e9.: expected a whole number"),
        ({"AIRLOCK_MAX_BODY_BYTES": "100"}, "127.0.0.1", "between 16384 and 104857600"),
        ({"AIRLOCK_LOGIN_LIMIT_USER": "0"}, "127.0.0.1", "AIRLOCK_LOGIN_"),
    ]
    for environ, host, message in bad:
        with pytest.raises(ConfigError, match=message):
            WebSecuritySettings.from_env(environ, host=host, port=7860)
    assert parse_duration("90", name="X") == 90 and parse_duration("1d", name="X") == 86400


def test_browser_tab_state_is_dropped_when_idle_or_closed() -> None:
    import gradio as gr
    from gradio.state_holder import StateHolder

    with gr.Blocks() as blocks:
        gr.State([])
        gr.Textbox()
    holder = StateHolder()
    holder.set_blocks(blocks)
    for tab in ("open", "closed", "busy"):
        holder[tab]
    holder.session_data["closed"].is_closed = True
    start = datetime.now()
    holder.time_last_used.update({"open": start, "closed": start, "busy": start + timedelta(seconds=1000)})
    assert reap_browser_state(holder, idle_s=1800, closed_s=300, now=(start + timedelta(seconds=301)).timestamp()) == 1
    assert set(holder.session_data) == {"open", "busy"}
    assert reap_browser_state(holder, idle_s=1800, closed_s=300,
                              now=(start + timedelta(seconds=1801)).timestamp()) == 1
    assert set(holder.session_data) == {"busy"} and set(holder.time_last_used) == {"busy"}
