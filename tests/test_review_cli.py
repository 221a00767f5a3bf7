"""The terminal reviewer: sign-in, list, show, approve/reject/edit, refusals."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from tests.helpers import USER, make_app, make_services, summarise, tool_call, tool_payloads
from ui.review_cli import review_main

pytestmark = pytest.mark.postgres


@pytest.fixture
def app(database_url):
    services = make_services(database_url)
    transfer = tool_call("transfer_to_human_agents", {"summary": "wants a human"}, "call_t")
    app, _ = make_app(services, [transfer, summarise])
    yield app
    services.close()


def _run(app, monkeypatch, capsys, *argv, password="review"):
    monkeypatch.setattr(sys, "stdin", io.StringIO(password + "\n"))
    code = review_main(["--user", argv[0], "--password-stdin", *argv[1:]], app=app)
    return code, capsys.readouterr()


def test_reviewer_lists_shows_and_approves(app, monkeypatch, capsys):
    thread = app.new_thread(user_id=USER)
    app.send(thread_id=thread, user_id=USER, text="Please transfer me to a human agent")
    code, out = _run(app, monkeypatch, capsys, "sam", "--json", "list")
    assert code == 0
    rows = json.loads(out.out)["items"]
    assert len(rows) == 1 and rows[0]["thread_id"] == thread
    review_id = rows[0]["review_id"]
    code, out = _run(app, monkeypatch, capsys, "sam", "show", review_id)
    shown = json.loads(out.out)
    assert code == 0 and shown["messages"][0]["content"] == "Please transfer me to a human agent"
    code, out = _run(app, monkeypatch, capsys, "sam", "approve", review_id)
    assert code == 0 and json.loads(out.out)["decision"] == "approve"
    code, out = _run(app, monkeypatch, capsys, "sam", "approve", review_id)
    assert code == 1 and "no longer pending" in out.err
    assert tool_payloads(app.messages(thread))[-1]["status"] != "rejected_by_reviewer"


def test_wrong_password_and_customers_are_refused(app, monkeypatch, capsys):
    thread = app.new_thread(user_id=USER)
    app.send(thread_id=thread, user_id=USER, text="Please transfer me to a human agent")
    with pytest.raises(SystemExit, match="sign-in failed"):
        _run(app, monkeypatch, capsys, "sam", "list", password="wrong")
    with pytest.raises(SystemExit, match="sign-in failed"):
        _run(app, monkeypatch, capsys, USER, "list", password="demo")  # a customer account
    assert len(app.list_reviews(roles=["reviewer", "supervisor"])) == 1


def test_reject_needs_a_message_and_edit_needs_json(app, monkeypatch, capsys):
    thread = app.new_thread(user_id=USER)
    app.send(thread_id=thread, user_id=USER, text="Please transfer me to a human agent")
    review_id = app.list_reviews(roles=["reviewer", "supervisor"])[0]["review_id"]
    with pytest.raises(SystemExit):
        _run(app, monkeypatch, capsys, "sam", "reject", review_id)
    code, out = _run(app, monkeypatch, capsys, "sam", "edit", review_id, "--args", "{not json")
    assert code == 2 and "not JSON" in out.err
    code, out = _run(app, monkeypatch, capsys, "sam", "reject", review_id, "--message", "not today")
    assert code == 0
    assert tool_payloads(app.messages(thread))[-1]["message"] == "not today"


def test_every_command_has_help():
    env = {**os.environ}
    for argv in (["--help"], ["review", "--help"], ["scan", "--help"], ["db", "--help"],
                 ["audit", "--help"], ["policy", "--help"], ["accounts", "--help"], ["demo", "--help"]):
        proc = subprocess.run([sys.executable, "-m", "ui.cli", *argv], capture_output=True, text=True,
                              env=env, timeout=60)
        assert proc.returncode == 0, (argv, proc.stderr)
        assert "usage:" in proc.stdout
