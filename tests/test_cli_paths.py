"""The ``airlock`` command as a person runs it: real subprocesses (issue 10, items 3, 10 and 11)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from graph.service import AirlockApp
from tests.helpers import RES, USER, make_services, reservation_doc
from tools.airline import POLICY_PATH

ROOT = Path(__file__).resolve().parents[1]
REVIEWER = ["reviewer", "supervisor"]


def _airlock(*argv: str, stdin: str = "", cwd: Path = ROOT, env: dict[str, str] | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "AIRLOCK_DATA_DIR")}
    return subprocess.run([sys.executable, "-m", "ui.cli", *argv], input=stdin, capture_output=True,
                          text=True, cwd=cwd, env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
                          timeout=timeout)


@pytest.mark.postgres
def test_review_edit_merges_refuses_bad_edits_and_takes_options_anywhere(database_url):
    services = make_services(database_url)
    try:
        app = AirlockApp(services=services)
        thread = app.new_thread(user_id=USER)
        app.send(thread_id=thread, user_id=USER, text=f"Add 40 checked bags to reservation {RES}")
        (case,) = app.list_reviews(roles=REVIEWER)
        review_id = case["review_id"]
        sam = ("--database-url", database_url, "review", "--user", "sam", "--password-stdin")

        # --json after the sub-command, the database from the global option.
        listed = _airlock(*sam, "list", "--json", stdin="review\n")
        assert listed.returncode == 0, listed.stderr
        assert [r["review_id"] for r in json.loads(listed.stdout)["items"]] == [review_id]

        # An edit that does not fit the tool is refused, and the case stays pending.
        bad = _airlock(*sam, "edit", review_id, "--args", '{"total_baggages": "many"}', stdin="review\n")
        assert bad.returncode == 2, bad.stderr
        assert "total_baggages" in bad.stderr and "still pending" in bad.stderr
        assert "Traceback" not in bad.stderr
        assert services.reviews.get(review_id)["status"] == "pending"

        # A partial edit is merged with the case's arguments.
        good = _airlock(*sam, "edit", review_id, "--json", "--args",
                        '{"total_baggages": 3, "nonfree_baggages": 2}', "--message", "Two paid bags only.",
                        stdin="review\n")
        assert good.returncode == 0, good.stderr
        assert json.loads(good.stdout)["pending"] == ["confirm"]
        (gate,) = app.pending(thread)
        assert gate.value["args"]["total_baggages"] == 3 and gate.value["args"]["reservation_id"] == RES
        done = app.answer_confirm(thread_id=thread, user_id=USER, interrupt_id=gate.id, action="confirm")
        assert "Two paid bags only." in done.reply and "3 checked bag(s)" in done.reply
        assert reservation_doc(services, RES)["total_baggages"] == 3
    finally:
        services.close()


def test_review_from_another_directory_refuses_without_the_apps_database(tmp_path):
    empty = tmp_path / "no-app-here"
    run = _airlock("review", "--user", "sam", "--password-stdin", "list", stdin="review\n", cwd=tmp_path,
                   env={"AIRLOCK_DATA_DIR": str(empty)})
    assert run.returncode != 0
    assert "no app database in" in run.stderr and str(empty) in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / ".data").exists() and not (empty / "pg").exists()  # nothing started


def test_the_data_directory_is_the_same_from_any_directory(tmp_path):
    code = "from graph.db import default_data_dir; print(default_data_dir())"
    env = {k: v for k, v in os.environ.items() if k != "AIRLOCK_DATA_DIR"}
    found = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=where,
                       env={**env, "PYTHONPATH": str(ROOT)}, check=True).stdout.strip()
        for where in (ROOT, tmp_path)
    }
    assert found == {str(ROOT / ".data")}


def test_the_global_policy_reaches_scan(tmp_path):
    doc = yaml.safe_load(POLICY_PATH.read_text(encoding="utf-8"))
    prefilter = next(layer for layer in doc["guards"]["input"] if layer["layer"] == "prefilter")
    prefilter["params"]["max_chars"] = 20
    doc["guards"]["input"] = [prefilter]  # the prefilter alone: quick to start
    policy = tmp_path / "short.yaml"
    policy.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    line = "Show me reservation VAAOXJ please\n"
    with_policy = _airlock("--policy", str(policy), "scan", "-", stdin=line)
    without = _airlock("scan", "--layers", "prefilter", "-", stdin=line)
    assert with_policy.returncode == 0 and without.returncode == 0, (with_policy.stderr, without.stderr)
    assert json.loads(with_policy.stdout)["reason"] == "length"
    assert json.loads(without.stdout)["action"] == "allow"


def test_eval_sends_options_to_one_report_only():
    mixed = _airlock("eval", "--seed", "3")
    assert mixed.returncode == 2 and "name the report" in mixed.stderr
    helped = _airlock("eval", "--help")
    assert helped.returncode == 0 and "quality" in helped.stdout and "pii" in helped.stdout


def test_demo_on_a_busy_port_says_so_in_one_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = _airlock("demo", "--port", str(port), timeout=120)
    assert run.returncode == 2
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"PORT {port}" in lines[0] and "make demo PORT=" in lines[0], run.stderr


def test_make_demo_takes_a_port():
    dry = subprocess.run(["make", "-n", "demo", "PORT=7999"], capture_output=True, text=True, cwd=ROOT, check=True)
    assert "airlock demo --port 7999" in dry.stdout
    default = subprocess.run(["make", "-n", "demo"], capture_output=True, text=True, cwd=ROOT,
                             env={k: v for k, v in os.environ.items() if k != "PORT"}, check=True)
    assert "airlock demo --port 7860" in default.stdout
