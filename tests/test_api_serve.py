"""``airlock serve`` as a process: a reconnect to another process, RS256 keys, CORS, the mounted Gradio app."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.api_server import SECRET, bearer, free_port, sse_events, start_server, token
from tests.api_server import serve_process as _serve_process
from tests.api_server import wait_ready as _wait_ready
from tests.conftest import ROOT, drop_database, make_database
from tests.helpers import RES, USER, ledger_rows, make_services
from ui.api import ServeSettings
from ui.auth import DEMO_ACCOUNTS_PATH, load_accounts

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

BAGS = "Add 2 checked bags to reservation VAAOXJ"


@pytest.fixture(scope="module")
def database(server_url: str) -> Iterator[str]:
    name, url = make_database(server_url)
    yield url
    drop_database(server_url, name)


@pytest.fixture(scope="module")
def services(database: str) -> Iterator[Any]:
    svc = make_services(database)
    yield svc
    svc.close()


def test_serve_help_and_bad_settings_exit_cleanly() -> None:
    shown = subprocess.run([sys.executable, "-m", "ui.cli", "serve", "--help"], cwd=ROOT, capture_output=True,
                           text=True, check=False)
    assert shown.returncode == 0 and "--allow-remote" in shown.stdout and "AIRLOCK_JWT" in shown.stdout
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_JWT")}
    refused = subprocess.run([sys.executable, "-m", "ui.cli", "serve", "--no-ui"], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=False)
    assert refused.returncode == 2 and "AIRLOCK_JWT_SECRET" in refused.stderr
    assert "Traceback" not in refused.stderr
    exposed = subprocess.run([sys.executable, "-m", "ui.cli", "serve", "--host", "0.0.0.0", "--allow-remote"],
                             cwd=ROOT, env={**env, "AIRLOCK_JWT_SECRET": SECRET}, capture_output=True, text=True,
                             check=False)
    assert exposed.returncode == 2 and "--no-ui" in exposed.stderr


@pytest.fixture(scope="module")
def two_processes(database: str, services: Any) -> Iterator[tuple[str, str]]:
    """This process's server and an `airlock serve` subprocess, on one database."""
    first = start_server(services, ServeSettings(jwt_secret=SECRET, mount_ui=False))
    port = free_port()
    process = _serve_process(database, port)
    try:
        _wait_ready(process, f"http://127.0.0.1:{port}")
        yield first.url, f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        first.close()


def test_a_reconnect_to_another_process_resumes_the_run_and_charges_once(two_processes: tuple[str, str],
                                                                         services: Any) -> None:
    here, other = two_processes
    who = token(USER, ["customer"])
    with httpx.Client(base_url=here, timeout=60) as a, httpx.Client(base_url=other, timeout=60) as b:
        thread_id = a.post("/v1/threads", json={}, headers=bearer(who)).json()["thread_id"]
        with a.stream("POST", f"/v1/threads/{thread_id}/messages", json={"text": BAGS},
                      headers=bearer(who)) as response:
            gate = next(e.data for e in sse_events(response) if e.event == "gate")
        before = len(ledger_rows(services, RES))
        key = uuid.uuid4().hex
        path = f"/v1/threads/{thread_id}/gates/{gate['interrupt_id']}"
        body = {"action": "confirm", "args_hash": gate["args_hash"]}
        with a.stream("POST", path, json=body, headers=bearer(who) | {"Idempotency-Key": key}) as response:
            run_id = response.headers["X-Run-Id"]
            assert next(sse_events(response)).event == "run"
        # The other process: re-post with the key, and resume by Last-Event-ID.
        with b.stream("POST", path, json=body, headers=bearer(who) | {"Idempotency-Key": key}) as response:
            assert response.status_code == 200 and response.headers["X-Run-Id"] == run_id
            events = list(sse_events(response))
        assert events[-1].event == "done" and events[-1].data["status"] == "completed"
        with b.stream("GET", f"/v1/runs/{run_id}/events", headers=bearer(who) | {"Last-Event-ID": "2"}) as r:
            assert [e.id for e in sse_events(r)] == [e.id for e in events[2:]]
        assert len(ledger_rows(services, RES)) == before + 1


def test_a_review_decided_on_one_process_resumes_a_thread_paused_on_the_other(two_processes: tuple[str, str],
                                                                              ) -> None:
    here, other = two_processes
    who, reviewer = token(USER, ["customer"]), token("sam", ["reviewer", "supervisor"])
    with httpx.Client(base_url=here, timeout=60) as a, httpx.Client(base_url=other, timeout=60) as b:
        thread_id = a.post("/v1/threads", json={}, headers=bearer(who)).json()["thread_id"]
        with a.stream("POST", f"/v1/threads/{thread_id}/messages", json={"text": "Please transfer me to a human agent"},
                      headers=bearer(who)) as response:
            assert any(e.event == "review" for e in sse_events(response))
        cases = b.get("/v1/reviews", headers=bearer(reviewer)).json()["items"]
        case = next(c for c in cases if c["thread_id"] == thread_id)
        decided = b.post(f"/v1/reviews/{case['review_id']}/decision", json={"action": "approve"},
                         headers=bearer(reviewer))
        assert decided.status_code == 200, decided.text
        view = a.get(f"/v1/threads/{thread_id}", headers=bearer(who)).json()
        assert view["pending"] == [] and view["messages"][-1]["role"] == "assistant"
        again = a.post(f"/v1/reviews/{case['review_id']}/decision", json={"action": "reject"},
                       headers=bearer(reviewer))
        assert again.status_code == 409


def test_rs256_tokens_from_a_jwks_file(services: Any, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}))
    srv = start_server(services, ServeSettings(jwks_file=tmp_path / "jwks.json", issuer="https://idp.example",
                                               audience="airlock", mount_ui=False))
    now = int(time.time())
    claims = {"sub": "ada", "roles": ["auditor"], "iss": "https://idp.example", "aud": "airlock", "exp": now + 60}
    good = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "k1"})
    # Algorithm confusion: an HS256 token keyed with the public key's PEM (built by hand; PyJWT refuses).
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    confused = _hs256_by_hand(claims, public_pem)
    # The same keys from a JWKS URL (the identity provider's endpoint).
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    jwks_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=jwks_server.serve_forever, daemon=True).start()
    jwks_url = f"http://127.0.0.1:{jwks_server.server_address[1]}/jwks.json"
    by_url = start_server(services, ServeSettings(jwks_url=jwks_url, issuer="https://idp.example",
                                                  audience="airlock", mount_ui=False))
    try:
        for base in (srv.url, by_url.url):
            with httpx.Client(base_url=base, timeout=30) as client:
                assert client.get("/v1/audit/verify", headers=bearer(good)).status_code == 200
                assert client.get("/v1/audit/verify", headers=bearer(forged)).status_code == 401
                assert client.get("/v1/audit/verify", headers=bearer(confused)).status_code == 401
    finally:
        srv.close()
        by_url.close()
        jwks_server.shutdown()


def _hs256_by_hand(claims: dict[str, Any], secret: bytes) -> str:
    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode()
    signing = f"{part(header)}.{part(json.dumps(claims).encode())}"
    return f"{signing}.{part(hmac.new(secret, signing.encode(), hashlib.sha256).digest())}"


def test_cors_allows_only_configured_origins(services: Any) -> None:
    srv = start_server(services, ServeSettings(jwt_secret=SECRET, mount_ui=False,
                                               cors_origins=("https://app.example",)))
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            ok = client.options("/v1/threads", headers={"Origin": "https://app.example", **preflight})
            assert ok.headers.get("access-control-allow-origin") == "https://app.example"
            evil = client.options("/v1/threads", headers={"Origin": "https://evil.example", **preflight})
            assert "access-control-allow-origin" not in evil.headers
    finally:
        srv.close()


def test_the_gradio_app_is_mounted_and_signs_in_with_the_accounts(services: Any) -> None:
    srv = start_server(services, ServeSettings(jwt_secret=SECRET), accounts=load_accounts(DEMO_ACCOUNTS_PATH))
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            page = client.get("/ui/")
            assert page.status_code == 200
            # /ui is behind ui/security.py's middleware, as in `airlock demo`.
            assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
            assert page.headers["x-frame-options"] == "DENY"
            foreign = client.post("/ui/login", data={"username": "sam", "password": "review"},
                                  headers={"Origin": "https://evil.example"})
            assert foreign.status_code == 403
            assert client.get("/ui/", headers={"Host": "rebound.example"}).status_code == 421
            anonymous = client.post("/ui/gradio_api/queue/join", json={}, headers={"Origin": srv.url})
            assert anonymous.status_code == 401
            wrong = client.post("/ui/login", data={"username": "sam", "password": "nope"})
            assert wrong.status_code >= 400
            right = client.post("/ui/login", data={"username": "sam", "password": "review"})
            assert right.status_code == 200, right.text
            assert "samesite=strict" in right.headers["set-cookie"].lower()
            signed_in = client.get("/ui/")
            assert '<meta name="airlock-csrf"' in signed_in.text
            config = client.get("/ui/config")
            assert config.status_code == 200 and config.json()["root"].endswith("/ui")  # assets load under /ui
            forged = client.post("/ui/gradio_api/queue/join", json={}, headers={"Origin": srv.url})
            assert forged.status_code == 403  # a browser request with the session but no CSRF token
            assert client.get("/healthz").status_code == 200  # the API shares the server
            assert "content-security-policy" not in client.get("/healthz").headers  # and keeps its own rules
    finally:
        srv.close()


def test_a_run_left_by_a_dead_process_does_not_lock_its_thread(services: Any) -> None:
    srv = start_server(services, ServeSettings(jwt_secret=SECRET, mount_ui=False))
    who = token(USER, ["customer"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as client:
            threads = [client.post("/v1/threads", json={}, headers=bearer(who)).json()["thread_id"] for _ in range(3)]
            # What a killed process leaves: a running run (this host, its pid gone), another host's
            # run without a heartbeat for ten minutes, and another host's live run.
            rows = [(threads[0], f"{socket.gethostname()}:{gone.pid}", "0 s"),
                    (threads[1], "elsewhere:1", "10 min"), (threads[2], "elsewhere:2", "0 s")]
            with services.pool.connection() as conn:
                for thread_id, owner, age in rows:
                    conn.execute(
                        "INSERT INTO api_runs (run_id, thread_id, user_id, request_hash, kind, owner, heartbeat_at)"
                        " VALUES (%s, %s, %s, 'x', 'message', %s, now() - %s::interval)",
                        (f"dead{thread_id[:8]}", thread_id, USER, owner, age))
                    conn.execute("INSERT INTO api_run_events (run_id, seq, event, data) VALUES (%s, 1, 'run', '{}')",
                                 (f"dead{thread_id[:8]}",))
            for thread_id, expected in zip(threads, (200, 200, 409), strict=True):
                with client.stream("POST", f"/v1/threads/{thread_id}/messages",
                                   json={"text": "Show me reservation VAAOXJ"}, headers=bearer(who)) as response:
                    events = list(sse_events(response)) if response.status_code == 200 else []
                    assert response.status_code == expected, thread_id
                if expected == 200:
                    assert events[-1].event == "done" and events[-1].data["status"] == "completed"
            # A client still following the dead run learns it failed, and the stream ends.
            with client.stream("GET", f"/v1/runs/dead{threads[0][:8]}/events", headers=bearer(who)) as response:
                dead = list(sse_events(response))
            assert [e.event for e in dead] == ["run", "error", "done"] and dead[-1].data["status"] == "failed"
            assert dead[1].data["status"] == 503
    finally:
        srv.close()
