"""The login page during a database outage says the service is unavailable, not "incorrect credentials".

The app (tests/browser_server.py) runs against its own database, and the outage is real: that
database stops accepting connections and every session of it is ended, as when its server is
down. Gradio's login form only knows "incorrect credentials" (HTTP 400) and success (200); the
app answers 503 with the reason, and the page must show it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import playwright.sync_api as playwright_sync
import psycopg
import pytest
from psycopg import sql

import tests.test_browser as base
from tests.browser_server import AppServer
from tests.conftest import drop_database, make_database
from tests.test_browser import WAIT_MS

pytestmark = [pytest.mark.browser, pytest.mark.postgres]
expect = playwright_sync.expect
PlaywrightTimeoutError = playwright_sync.TimeoutError


@pytest.fixture(scope="module")
def app_db(server_url: str) -> Iterator[tuple[str, str]]:
    name, url = make_database(server_url)
    yield name, url
    drop_database(server_url, name)


@pytest.fixture(scope="module")
def server(app_db: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    with AppServer(app_db[1], data_dir=tmp_path_factory.mktemp("login-outage-app"), timeout=240) as srv:
        yield srv


server_log_on_failure = base.server_log_on_failure
browser = base.browser


@contextmanager
def outage(server_url: str, name: str) -> Iterator[None]:
    """Make the app's database refuse every connection, and end the ones it has."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
                     " AND pid <> pg_backend_pid()", (name,))
    try:
        yield
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(name)))


def test_login_during_a_database_outage_says_the_service_is_unavailable(
    browser: Any, server: AppServer, app_db: tuple[str, str], server_url: str
) -> None:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.route(re.compile(r"^(?!http://127\.0\.0\.1[:/]).*"), lambda route: route.abort())
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(server.url)
    with outage(server_url, app_db[0]):
        # A program sees the reason and a 503, for a right and a wrong password alike.
        for password in ("review", "wrong"):
            answer = httpx.post(f"{server.url}/login", data={"username": "sam", "password": password},
                                headers={"origin": server.url}, timeout=30)
            assert answer.status_code == 503, answer.text
            assert "unavailable" in answer.json()["detail"]
        page.get_by_label("username").fill("sam")
        page.get_by_label("password").fill("review")
        page.get_by_role("button", name="Login").click()
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("Service unavailable")
        expect(alert).to_contain_text("database")
        expect(page.get_by_text("Incorrect credentials", exact=False)).to_have_count(0)
        base.SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(base.SHOTS / "login-outage.png"))
    # The database is back: the same form signs in, and the notice is gone. The pool reconnects
    # with a back-off, so (as the notice says) the customer may need to try again: a few clicks.
    signed_in = page.locator("#signed-in")
    for _ in range(20):
        try:
            page.get_by_role("button", name="Login").click(timeout=3000)
        except PlaywrightTimeoutError:
            break  # the form is gone: the last click signed in and the app is loading
        try:
            expect(signed_in).to_contain_text("Signed in as sam", timeout=3000)
            break
        except AssertionError:
            expect(page.get_by_text("Incorrect credentials", exact=False)).to_have_count(0)
    expect(signed_in).to_contain_text("Signed in as sam")
    context.close()
