"""The app's web security, attacked the way a web attacker works (issue 9, items 3-6 and 9).

One app process (tests/browser_server.py) on a free port, a fresh database, the demo accounts.
The browser test serves an attacker's page from another port of the same host with
``http.server`` and opens it in the signed-in reviewer's browser: it tries a credentialed
``fetch``, a no-CORS ``fetch`` and a form POST to the decide endpoint, a GET of ``/logout`` and
frames the app. The HTTP tests speak to the same server as a program would.
"""

from __future__ import annotations

import http.server
import json
import re
import socketserver
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import playwright.sync_api as playwright_sync
import pytest

import tests.test_browser as base
from tests.browser_server import AppServer, free_port
from tests.conftest import drop_database, make_database
from tests.test_browser import WAIT_MS, db_rows, pending_review, say, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.postgres]
expect = playwright_sync.expect
OTHER_HOST = "airlock.test"  # an allowed name for the app besides 127.0.0.1 (Host-header tests)
PAYLOAD = '<img src="/logout" id="pwn"><b id="bold">bold</b>'


@pytest.fixture(scope="module")
def app_db(server_url: str) -> Iterator[str]:
    name, url = make_database(server_url)
    yield url
    drop_database(server_url, name)


@pytest.fixture(scope="module")
def server(app_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    srv = AppServer(app_db, data_dir=tmp_path_factory.mktemp("web-security-app"), timeout=240)
    srv.extra_env = {"AIRLOCK_ALLOWED_ORIGINS": f"http://127.0.0.1:{srv.port},http://{OTHER_HOST}:{srv.port}"}
    with srv:
        yield srv


# The same browser and log fixtures as tests/test_browser.py (this module has its own server).
server_log_on_failure = base.server_log_on_failure
browser = base.browser


def login(server: AppServer, username: str, password: str, *, local: str = "127.0.0.1",
          headers: dict[str, str] | None = None) -> httpx.Client:
    """Sign in as a program would; return the client holding the session cookies."""
    client = httpx.Client(base_url=server.url, timeout=15,
                          transport=httpx.HTTPTransport(local_address=local))
    answer = client.post("/login", data={"username": username, "password": password}, headers=headers or {})
    assert answer.status_code == 200, answer.text
    return client


def signed_in(client: httpx.Client) -> bool:
    status = client.get("/gradio_api/login_check").status_code
    assert status in (200, 401), status
    return status == 200


# -- the attacker's page ----------------------------------------------------------------------------
ATTACK_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>You won</title></head><body>
<h1>Claim your prize</h1>
<img src="{app}/logout" alt="">
<iframe id="victim" name="victim" src="{app}/" width="900" height="500"
        onload="window.framed = true"></iframe>
<iframe id="sink" name="sink" onload="window.sinkLoads = (window.sinkLoads || 0) + 1"></iframe>
<form id="form" method="post" action="{app}/gradio_api/call/decide_review" enctype="text/plain" target="sink">
<input type="hidden" name='{{"data": ["{rid}", "approve", "", "form", "' value='"]}}'>
</form>
<script>
window.results = {{}};
const body = JSON.stringify({{data: ["{rid}", "approve", "", "approved by an attacker"]}});
fetch("{app}/gradio_api/call/decide_review", {{method: "POST", credentials: "include",
      headers: {{"Content-Type": "application/json"}}, body}})
  .then(r => r.json())
  .then(j => fetch("{app}/gradio_api/call/decide_review/" + j.event_id, {{credentials: "include"}}))
  .then(r => r.text()).then(t => window.results.cors = "read: " + t)
  .catch(e => window.results.cors = "refused: " + e);
fetch("{app}/gradio_api/call/decide_review", {{method: "POST", mode: "no-cors", credentials: "include",
      headers: {{"Content-Type": "text/plain"}}, body}})
  .then(() => window.results.simple = "sent").catch(e => window.results.simple = "refused: " + e);
document.getElementById("form").submit();
</script></body></html>"""


class _AttackerServer:
    """A tiny http.server on another port of 127.0.0.1 serving one page."""

    def __init__(self, page: str) -> None:
        body = page.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.port = free_port()
        self.httpd = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.port}/"

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- the browser test ----------------------------------------------------------------------------------
def test_another_origin_cannot_make_a_reviewer_decide_nor_frame_the_app(
    browser: Any, server: AppServer, app_db: str
) -> None:
    customer_ctx, customer = sign_in(browser, server, "lei_rossi_3206", "demo")
    say(customer, "Please transfer me to a human agent")
    expect(customer.locator("#review-notice")).to_be_visible()
    review = pending_review(app_db, "lei_rossi_3206")
    reviewer_ctx, reviewer = sign_in(browser, server, "sam", "review")
    expect(reviewer.locator("#case-details")).to_contain_text(review["review_id"])

    # The reviewer, still signed in, opens the attacker's page on another port of the same host.
    page = ATTACK_PAGE.format(app=server.url, rid=review["review_id"])
    with _AttackerServer(page) as attacker_url:
        evil = reviewer_ctx.new_page()
        evil.set_default_timeout(WAIT_MS)
        evil.goto(attacker_url)
        evil.wait_for_function("window.results.cors && window.results.simple && window.framed"
                               " && window.sinkLoads >= 1")
        results = evil.evaluate("window.results")
        victim = next(f for f in evil.frames if f.name == "victim")
        framed_app = victim.url.startswith(server.url) and victim.evaluate(
            "!!document.querySelector('gradio-app')")
        evil.close()

    assert db_rows(app_db, "SELECT status, reviewer FROM reviews WHERE review_id = %s", review["review_id"]) == [
        {"status": "pending", "reviewer": None}], results
    assert results["cors"].startswith("refused"), results  # nothing read back
    assert not framed_app, "the app was framed by another origin"
    # The attacker's <img src="/logout"> did not sign the reviewer out.
    reviewer.reload()
    expect(reviewer.locator("#signed-in")).to_contain_text("Signed in as sam")

    # Control: the reviewer's own page decides the case (its requests carry the CSRF token).
    expect(reviewer.locator("#case-details")).to_contain_text(review["review_id"])
    reviewer.locator("#approve-btn").click()
    expect(reviewer.locator("#decide-result")).to_contain_text("Approved")
    assert db_rows(app_db, "SELECT status, reviewer FROM reviews WHERE review_id = %s", review["review_id"]) == [
        {"status": "approved", "reviewer": "sam"}]
    expect(customer.locator("#chatbot")).to_contain_text("TRANSFERRED TO A HUMAN AGENT")
    customer_ctx.close()
    reviewer_ctx.close()


def test_customer_html_shows_as_text_to_the_reviewer(browser: Any, server: AppServer, app_db: str) -> None:
    customer_ctx, customer = sign_in(browser, server, "mia_li_3668", "demo")
    say(customer, f"{PAYLOAD} Please transfer me to a human agent")
    expect(customer.locator("#review-notice")).to_be_visible()
    review = pending_review(app_db, "mia_li_3668")
    expect(customer.locator("#pwn")).to_have_count(0)

    reviewer_ctx, reviewer = sign_in(browser, server, "sam", "review")
    reviewer.locator("#case-select input").click()
    reviewer.get_by_role("option", name=re.compile("mia_li_3668")).click()
    expect(reviewer.locator("#case-details")).to_contain_text(review["review_id"])
    case_chat = reviewer.locator("#case-chat")
    expect(case_chat).to_contain_text('<img src="/logout" id="pwn">')  # the customer's HTML, as text
    expect(case_chat).to_contain_text('<b id="bold">bold</b>')
    expect(reviewer.locator("#pwn")).to_have_count(0)
    expect(reviewer.locator("#bold")).to_have_count(0)
    reviewer.get_by_role("tab", name="Audit").click()
    expect(reviewer.locator("#audit-status")).to_contain_text("Audit chain intact")
    expect(reviewer.locator("#pwn")).to_have_count(0)
    # Nobody was signed out by the <img src="/logout"> they were shown.
    for page, who in ((reviewer, "sam"), (customer, "mia_li_3668")):
        page.reload()
        expect(page.locator("#signed-in")).to_contain_text(f"Signed in as {who}")
    customer_ctx.close()
    reviewer_ctx.close()


def test_sign_out_is_a_post_from_the_page(browser: Any, server: AppServer) -> None:
    context, page = sign_in(browser, server, "sam", "review")
    page.locator("#logout").click()
    expect(page.locator("#confirm-logout")).to_be_visible()  # GET /logout only asks
    page.goto(server.url)
    expect(page.locator("#signed-in")).to_contain_text("Signed in as sam")
    page.locator("#logout").click()
    page.locator("#confirm-logout").click()
    expect(page.get_by_label("username")).to_be_visible()
    context.close()


# -- HTTP, as a program ---------------------------------------------------------------------------------
def test_cancel_needs_a_session(server: AppServer) -> None:
    body = {"session_hash": "abc", "fn_index": 0, "event_id": "e1"}
    answer = httpx.post(server.url + "/gradio_api/cancel", json=body, timeout=15)
    assert answer.status_code == 401, answer.text
    assert "sign in" in answer.json()["detail"]


def test_get_logout_ends_nothing_and_post_ends_only_this_session(server: AppServer) -> None:
    first, second = login(server, "sam", "review"), login(server, "sam", "review")
    assert first.get("/logout").status_code == 200
    assert signed_in(first) and signed_in(second)
    answer = first.post("/logout", headers={"Origin": server.url})
    assert answer.status_code == 303
    assert not signed_in(first)
    assert signed_in(second)  # the user's other session is untouched
    forged = second.post("/logout", headers={"Origin": "http://127.0.0.1:1"})
    assert forged.status_code == 403 and signed_in(second)


def test_login_from_another_origin_is_refused(server: AppServer) -> None:
    answer = httpx.post(server.url + "/login", data={"username": "sam", "password": "review"},
                        headers={"Origin": "http://127.0.0.1:1"}, timeout=15)
    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers
    answer = httpx.post(server.url + "/login", data={"username": "sam", "password": "review"},
                        headers={"Origin": "null"}, timeout=15)
    assert answer.status_code == 403


def test_session_cookies_are_samesite_strict(server: AppServer) -> None:
    answer = httpx.post(server.url + "/login", data={"username": "sam", "password": "review"}, timeout=15)
    cookies = answer.headers.get_list("set-cookie")
    assert cookies and all("SameSite=Strict" in c and "HttpOnly" in c for c in cookies), cookies
    assert not any(re.search("samesite=none", c, re.I) for c in cookies)


def test_no_credentialed_cors_for_other_origins_whatever_the_host(server: AppServer) -> None:
    client = login(server, "sam", "review")
    for host in (f"127.0.0.1:{server.port}", f"{OTHER_HOST}:{server.port}"):
        for origin in ("http://evil.example", "http://127.0.0.1:1", "null"):
            headers = {"Host": host, "Origin": origin}
            answer = client.get("/gradio_api/info", headers=headers)
            assert "access-control-allow-origin" not in answer.headers, (host, origin, answer.headers)
            pre = client.options("/gradio_api/call/decide_review",
                                 headers={**headers, "Access-Control-Request-Method": "POST",
                                          "Access-Control-Request-Headers": "content-type"})
            assert pre.status_code == 403 and "access-control-allow-origin" not in pre.headers
    # A Host the app is not served at (DNS rebinding) gets nothing.
    assert client.get("/", headers={"Host": "attacker.example"}).status_code == 421


def test_pages_cannot_be_framed(server: AppServer) -> None:
    for path in ("/", "/logout", "/gradio_api/info"):
        answer = httpx.get(server.url + path, timeout=15)
        assert answer.headers.get("x-frame-options") == "DENY", path
        csp = answer.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp, (path, csp)


def test_a_browser_request_without_the_csrf_token_is_refused(server: AppServer) -> None:
    client = login(server, "sam", "review")
    data = {"data": ["no-such-review", "approve", "", ""]}
    same_origin = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
    assert client.post("/gradio_api/call/decide_review", json=data, headers=same_origin).status_code == 403
    page = client.get("/", headers={"Accept-Encoding": "br, gzip"}).text  # as a browser asks
    token = re.search(r'name="airlock-csrf" content="([0-9a-f]+)"', page)
    assert token is not None
    ok = client.post("/gradio_api/call/decide_review", json=data,
                     headers={**same_origin, "X-Airlock-CSRF": token.group(1)})
    assert ok.status_code == 200 and "event_id" in ok.json()
    # Another session's token is no good.
    other = login(server, "sam", "review")
    assert other.post("/gradio_api/call/decide_review", json=data,
                      headers={**same_origin, "X-Airlock-CSRF": token.group(1)}).status_code == 403


def test_request_bodies_are_limited(server: AppServer, app_db: str) -> None:
    client = login(server, "lei_rossi_3206", "demo")
    big = json.dumps({"data": ["x" * 2_000_000], "session_hash": "s", "fn_index": 0})
    answer = client.post("/gradio_api/queue/join", content=big, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and "too large" in answer.json()["detail"]

    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b"x" * 65_536  # 4 MiB, no Content-Length

    answer = client.post("/gradio_api/queue/join", content=chunks(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 413


def test_login_throttle_is_per_user_and_address_and_cannot_lock_a_reviewer_out(
    server: AppServer, app_db: str
) -> None:
    start = threading.Barrier(30)

    def guess(n: int) -> int:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            start.wait()  # all at once: the throttle must count them atomically
            return client.post("/login", data={"username": "sam", "password": f"guess-{n}"}).status_code

    with ThreadPoolExecutor(max_workers=30) as pool:
        assert set(pool.map(guess, range(30))) == {400}
    # From the guessing address, even the right password is refused for now ...
    answer = httpx.post(server.url + "/login", data={"username": "sam", "password": "review"}, timeout=15)
    assert answer.status_code == 400
    # ... but sam, from his own address, signs in: a stranger cannot lock a reviewer out.
    assert signed_in(login(server, "sam", "review", local="127.0.0.2"))
    failures = db_rows(app_db, "SELECT payload FROM audit_events WHERE event_type = 'auth.login' "
                               "AND actor = 'sam' AND (payload->>'ok')::boolean = false")
    assert 1 <= len(failures) <= 3, failures  # not one row per unauthenticated attempt
