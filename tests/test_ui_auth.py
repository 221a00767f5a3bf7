"""Fast tests of the app's accounts, password hashing, listen-address check and UI helpers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from ui import auth
from ui.auth import (
    DEMO_ACCOUNTS_PATH,
    MIN_ITERATIONS,
    AccountsError,
    UnsafeListenError,
    accounts_main,
    check_listen_address,
    hash_password,
    is_loopback,
    load_accounts,
    verify_password,
)

Capsys = pytest.CaptureFixture[str]
# One hash for the whole module: hashing costs ~0.1 s by design.
PW = "correct horse battery staple"
HASH = hash_password(PW)


def write(tmp_path: Path, text: str, name: str = "accounts.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def good_file(tmp_path: Path) -> Path:
    return write(tmp_path, f"""\
accounts:
  - username: alice
    password_hash: "{HASH}"
    roles: [reviewer, supervisor]
  - username: bob_smith_1
    password_hash: "{HASH}"
    roles: [customer]
    customer_id: bob_smith_1
""")


# -- hashing ------------------------------------------------------------------------------------
def test_hash_format_and_parameters() -> None:
    algorithm, iterations, salt, digest = HASH.split("$")
    assert algorithm == "pbkdf2_sha256"
    assert int(iterations) >= 200_000
    assert len(base64.b64decode(salt)) >= 16
    expected = hashlib.pbkdf2_hmac("sha256", PW.encode(), base64.b64decode(salt), int(iterations))
    assert base64.b64decode(digest) == expected


def test_salt_is_random() -> None:
    other = hash_password(PW)
    assert other != HASH
    assert verify_password(PW, other) and verify_password(PW, HASH)


def test_verify_rejects_wrong_and_malformed() -> None:
    assert not verify_password("wrong", HASH)
    assert not verify_password(PW + " ", HASH)
    assert not verify_password(PW, "")
    assert not verify_password(PW, "md5$1$abc$def")
    assert not verify_password(PW, HASH.replace("pbkdf2_sha256", "pbkdf2_sha1"))
    # a weak iteration count is refused even if the digest matches
    salt = b"0123456789abcdef"
    weak = hashlib.pbkdf2_hmac("sha256", PW.encode(), salt, 1000)
    encoded = f"pbkdf2_sha256$1000${base64.b64encode(salt).decode()}${base64.b64encode(weak).decode()}"
    assert not verify_password(PW, encoded)


def test_verify_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = auth.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert verify_password(PW, HASH)
    assert not verify_password("nope", HASH)
    assert len(calls) == 2


def test_hash_password_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        hash_password("")
    with pytest.raises(ValueError, match="iterations"):
        hash_password("x", iterations=MIN_ITERATIONS - 1)


# -- the accounts file -----------------------------------------------------------------------------
def test_demo_accounts() -> None:
    accounts = load_accounts(DEMO_ACCOUNTS_PATH)
    assert accounts.is_demo
    assert set(accounts.accounts) == {"lei_rossi_3206", "harper_lopez_1489", "mia_li_3668", "sam"}
    for name in ("lei_rossi_3206", "harper_lopez_1489", "mia_li_3668"):
        account = accounts.authenticate(name, "demo")
        assert account is not None and account.is_customer and not account.is_reviewer
        assert account.customer_id == name
    sam = accounts.authenticate("sam", "review")
    assert sam is not None and sam.is_reviewer and not sam.is_customer
    assert sam.roles == ("reviewer", "supervisor")
    assert accounts.authenticate("sam", "demo") is None
    assert accounts.authenticate("nobody", "demo") is None
    # stored as hashes only
    text = DEMO_ACCOUNTS_PATH.read_text()
    assert "password_hash: \"pbkdf2_sha256$" in text
    assert "password:" not in text


def test_load_good_file(tmp_path: Path) -> None:
    accounts = load_accounts(good_file(tmp_path))
    assert not accounts.is_demo
    assert accounts.authenticate("alice", PW) is not None
    assert accounts.get("bob_smith_1") is not None
    assert accounts.get(None) is None and accounts.get("") is None


@pytest.mark.parametrize(
    ("body", "line", "reason"),
    [
        ("accounts:\n  - username: a\n    roles: [reviewer\n", 4, "not valid YAML"),
        ("- just a list\n", 1, "expected a mapping"),
        ("accounts: []\n", 1, "accounts"),
        ("accounts:\n  - username: a\n    roles: [reviewer]\n", 2, "password_hash: Field required"),
        ("accounts:\n  - username: a\n    password_hash: \"plain\"\n    roles: [reviewer]\n", 3,
         "password_hash: expected 'pbkdf2_sha256"),
        (f"accounts:\n  - username: a\n    password_hash: \"{HASH}\"\n    roles: [customer]\n", 2,
         "needs a customer_id"),
        (f"accounts:\n  - username: a\n    password_hash: \"{HASH}\"\n    roles: [Reviewer]\n", 4,
         "roles: role 'Reviewer'"),
        (f"accounts:\n  - username: a\n    password_hash: \"{HASH}\"\n    roles: []\n", 4, "roles"),
        (f"accounts:\n  - username: a\n    password_hash: \"{HASH}\"\n    roles: [reviewer]\n"
         "    password: hunter2\n", 5, "password: Extra inputs are not permitted"),
        (f"accounts:\n  - username: a\n    password_hash: \"{HASH}\"\n    roles: [reviewer]\n"
         f"  - username: a\n    password_hash: \"{HASH}\"\n    roles: [reviewer]\n", 5, "listed twice"),
        (f"accounts:\n  - username: \"a b\"\n    password_hash: \"{HASH}\"\n    roles: [reviewer]\n", 2,
         "username"),
    ],
)
def test_bad_file_names_file_line_reason(tmp_path: Path, body: str, line: int, reason: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(AccountsError) as info:
        load_accounts(path)
    err = info.value
    assert err.path == path
    assert err.line == line, str(err)
    assert reason in err.reason, str(err)
    assert str(err).startswith(f"{path}:{line}: ")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AccountsError, match="no such file"):
        load_accounts(tmp_path / "nope.yaml")


# -- where the app may listen -----------------------------------------------------------------------
@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)
    assert check_listen_address(host, allow_remote=False, environ={}).is_demo


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", ""])
def test_non_loopback_refused_without_real_accounts(tmp_path: Path, host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(UnsafeListenError, match="--allow-remote"):
        check_listen_address(host, allow_remote=False, environ={})
    with pytest.raises(UnsafeListenError, match="AIRLOCK_ACCOUNTS"):
        check_listen_address(host, allow_remote=True, environ={})
    with pytest.raises(UnsafeListenError, match="demo accounts"):
        check_listen_address(host, allow_remote=True, environ={"AIRLOCK_ACCOUNTS": str(DEMO_ACCOUNTS_PATH)})
    copy = tmp_path / "copy.yaml"  # a copy of the demo file is still the demo file
    shutil.copy(DEMO_ACCOUNTS_PATH, copy)
    with pytest.raises(UnsafeListenError, match="demo accounts"):
        check_listen_address(host, allow_remote=True, environ={"AIRLOCK_ACCOUNTS": str(copy)})
    accounts = check_listen_address(host, allow_remote=True,
                                    environ={"AIRLOCK_ACCOUNTS": str(good_file(tmp_path))})
    assert not accounts.is_demo


def test_bad_accounts_file_fails_before_listening(tmp_path: Path) -> None:
    bad = write(tmp_path, "accounts: 3\n")
    with pytest.raises(AccountsError):
        check_listen_address("127.0.0.1", allow_remote=False, environ={"AIRLOCK_ACCOUNTS": str(bad)})


def test_launch_refuses_public_address(monkeypatch: pytest.MonkeyPatch, capsys: Capsys) -> None:
    from graph.runtime import AirlockServices
    from ui import app as ui_app

    def boom(*a: Any, **k: Any) -> None:
        raise AssertionError("services must not start")

    monkeypatch.setattr(AirlockServices, "start", boom)
    assert ui_app.launch(host="0.0.0.0", port=1, allow_remote=True, environ={}) == 2
    assert "refusing to listen on 0.0.0.0" in capsys.readouterr().err
    assert ui_app.launch(host="0.0.0.0", port=1, allow_remote=False, environ={}) == 2


# -- `airlock accounts` -------------------------------------------------------------------------------
def test_accounts_hash_from_stdin(monkeypatch: pytest.MonkeyPatch, capsys: Capsys) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret pass\n"))
    assert accounts_main(["hash", "--password-stdin"]) == 0
    out = capsys.readouterr().out.strip()
    assert verify_password("s3cret pass", out)


def test_accounts_hash_prompts(monkeypatch: pytest.MonkeyPatch, capsys: Capsys) -> None:
    answers = iter(["pw1", "pw1"])
    monkeypatch.setattr(auth.getpass, "getpass", lambda prompt="": next(answers))
    assert accounts_main(["hash"]) == 0
    assert verify_password("pw1", capsys.readouterr().out.strip())
    answers = iter(["pw1", "pw2"])
    assert accounts_main(["hash"]) == 1
    assert "do not match" in capsys.readouterr().err


def test_accounts_hash_refuses_empty(monkeypatch: pytest.MonkeyPatch, capsys: Capsys) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert accounts_main(["hash", "--password-stdin"]) == 1
    assert "empty" in capsys.readouterr().err


def test_accounts_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert accounts_main(["check", str(good_file(tmp_path))]) == 0
    assert "ok (2 accounts)" in capsys.readouterr().out
    bad = write(tmp_path, "accounts:\n  - username: a\n", "bad.yaml")
    assert accounts_main(["check", str(bad)]) == 1
    assert f"{bad}:2:" in capsys.readouterr().err


# -- the UI's server-side checks and rendering (no server, no browser) -------------------------------
class FakeApp:
    """Only what AirlockUI touches; every reviewer method fails the test if reached."""

    def __init__(self, pool: Any = None) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.services = SimpleNamespace(
            model=SimpleNamespace(), pool=pool,
            audit=SimpleNamespace(append=lambda e, actor, thread_id=None, payload=None:
                                  self.events.append((e, actor, payload or {}))),
            redact=lambda v: v,
        )

    def decide_review(self, **kw: Any) -> Any:
        raise AssertionError("a non-reviewer reached decide_review")

    def list_reviews(self, **kw: Any) -> Any:
        raise AssertionError("a non-reviewer reached list_reviews")

    def get_review(self, *a: Any, **kw: Any) -> Any:
        raise AssertionError("a non-reviewer reached get_review")


def make_ui(tmp_path: Path, pool: Any = None) -> tuple[Any, FakeApp]:
    from ui.app import AirlockUI

    fake = FakeApp(pool)
    return AirlockUI(app=fake, accounts=load_accounts(good_file(tmp_path))), fake  # type: ignore[arg-type]


def test_reviewer_handlers_refuse_customers_and_strangers(tmp_path: Path) -> None:
    import gradio as gr

    ui, fake = make_ui(tmp_path)
    for username in ("bob_smith_1", None, "mallory"):
        request = SimpleNamespace(username=username)
        with pytest.raises(gr.Error):
            ui.decide_review("r1", "approve", "", "", request)
        with pytest.raises(gr.Error):
            ui.on_inbox(None, None, request)
        with pytest.raises(gr.Error):
            ui.on_case("r1", request)
        with pytest.raises(gr.Error):
            ui.on_audit("", 10, request)
    assert [e[:2] for e in fake.events][:1] == [("ui.refused", "bob_smith_1")]


@pytest.mark.postgres
def test_login_uses_accounts_and_throttle(tmp_path: Path, pool: Any) -> None:
    from ui.login_throttle import LoginGate, LoginThrottle, ThrottleLimits

    ui, fake = make_ui(tmp_path, pool)
    assert asyncio.run(ui.login("alice", PW))
    assert not asyncio.run(ui.login("alice", "wrong"))
    assert not asyncio.run(ui.login("nobody", PW))
    logins = [(e, a, p["ok"]) for e, a, p in fake.events]
    assert logins == [("auth.login", "alice", True), ("auth.login", "alice", False)]
    ui.gate = LoginGate(accounts=ui.accounts, throttle=LoginThrottle(pool=pool, limits=ThrottleLimits(per_pair=1)),
                        audit=lambda e, a, p: fake.events.append((e, a, p)))
    assert not asyncio.run(ui.login("alice", "wrong"))
    assert not asyncio.run(ui.login("alice", PW))  # throttled from this address, even with the right password


def test_render_messages_inline_decisions() -> None:
    from graph.service import PendingInterrupt
    from ui.app import decision_rows, describe_decision, render_messages, thread_label

    messages: list[Any] = [
        HumanMessage(content="[message withheld by the input guard]", id="h1",
                     additional_kwargs={"airlock_guard": "block"}),
        AIMessage(content="Sorry, I can't help with that.", id="a1"),
        HumanMessage(content="Add 2 bags to VAAOXJ", id="h2", additional_kwargs={"airlock_guard": "allow"}),
        AIMessage(content="", id="a2", tool_calls=[{"name": "get_reservation_details",
                                                    "args": {"reservation_id": "VAAOXJ"}, "id": "call_0"}]),
        ToolMessage(content='{"status": "ok"}', tool_call_id="call_0", id="t1"),
        AIMessage(content="", id="a3", tool_calls=[{"name": "update_reservation_baggages",
                                                    "args": {"reservation_id": "VAAOXJ"}, "id": "call_1"}]),
    ]
    decisions = [
        {"stage": "input", "layer": "prefilter", "action": "block", "reason": "blocklist:en:ignore_previous"},
        {"stage": "input", "layer": "prefilter", "action": "allow", "reason": ""},
        {"tool": "get_reservation_details", "tool_call_id": "call_0", "guardrail": "pre-tool",
         "action": "allow"},
    ]
    gate = PendingInterrupt(id="i1", kind="confirm", value={"tool_call_id": "call_1", "type": "confirm"})
    chat, ids = render_messages(messages, decisions, pending=[gate], staff=True)
    assert len(chat) == len(ids)
    assert chat[0] == {"role": "user", "content": "[message withheld by the input guard]"}
    assert "blocked by prefilter: blocklist:en:ignore_previous" in chat[1]["content"]
    assert chat[1]["metadata"]["title"].startswith("Blocked · input guard: blocked")
    tool_box = next(m for m in chat if "get_reservation_details" in m["content"])
    assert "allowed by pre-tool" in tool_box["content"] and '"status": "ok"' in tool_box["content"]
    waiting = chat[-1]
    assert "waiting for your confirmation" in waiting["metadata"]["title"]
    assert waiting["metadata"]["status"] == "pending"
    assert describe_decision({"stage": "input", "layer": "pii", "action": "modify", "reason": "EMAIL"}) == \
        "modified by pii: EMAIL"
    assert decision_rows(decisions)[0] == ["get_reservation_details", "pre-tool", "allow", ""]
    assert thread_label({"title": "Add bags", "pending": ["confirm"]}).startswith("[awaiting your confirmation]")
    label = thread_label({"title": "", "pending": ["review"]})
    assert label == "[waiting for a reviewer] New conversation"
