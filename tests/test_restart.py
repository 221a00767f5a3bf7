"""A paused thread survives its process being killed and resumes in a new process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import RES, ledger_rows, make_services

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]

SCRIPT = [
    {"content": "", "tool_calls": [{"name": "update_reservation_baggages", "id": "call_bags", "args": {
        "reservation_id": RES, "total_baggages": 4, "nonfree_baggages": 3, "payment_id": "credit_card_1052991"}}]},
    "Your bags were added and the card was charged.",
]

PAUSE = """
import json, os, signal, sys
from graph.runtime import AirlockServices, AirlockSettings
from graph.service import AirlockApp
from nodes.model.scripted import ScriptedChatModel
url, spec = sys.argv[1], json.loads(sys.argv[2])
services = AirlockServices.start(AirlockSettings(database_url=url, model_provider="offline"))
app = AirlockApp(services=services, model=ScriptedChatModel.from_spec(spec, cursor="conversation"))
thread = app.new_thread(user_id="lei_rossi_3206")
result = app.send(thread_id=thread, user_id="lei_rossi_3206", text="add 3 bags to VAAOXJ")
gate = result.pending[0]
print(json.dumps({"thread": thread, "gate": gate.id, "amount": gate.value["amount_usd"]}), flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # a crash: no clean shutdown, no pool close
"""

RESUME = """
import json, sys
from graph.runtime import AirlockServices, AirlockSettings
from graph.service import AirlockApp
from nodes.model.scripted import ScriptedChatModel
url, spec, thread = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
services = AirlockServices.start(AirlockSettings(database_url=url, model_provider="offline"))
app = AirlockApp(services=services, model=ScriptedChatModel.from_spec(spec, cursor="conversation"))
gate = app.pending(thread)[0]
result = app.answer_confirm(thread_id=thread, user_id="lei_rossi_3206", interrupt_id=gate.id, action="confirm")
print(json.dumps({"gate": gate.id, "reply": result.reply, "pending": len(result.pending),
                  "tool": [m.content for m in result.messages if m.type == "tool"]}), flush=True)
"""


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=180)


def test_pause_kill_resume_in_a_new_process(database_url):
    spec = json.dumps(SCRIPT)
    paused = _run(PAUSE, database_url, spec)
    assert paused.returncode == -signal.SIGKILL, paused.stderr
    first = json.loads(paused.stdout.strip().splitlines()[-1])
    assert first["amount"] == 150.0

    services = make_services(database_url)
    try:
        assert ledger_rows(services, RES) == []
        resumed = _run(RESUME, database_url, spec, first["thread"])
        assert resumed.returncode == 0, resumed.stderr
        second = json.loads(resumed.stdout.strip().splitlines()[-1])
        assert second["gate"] == first["gate"]  # the same interrupt, read back from Postgres
        assert second["pending"] == 0
        assert second["reply"] == "Your bags were added and the card was charged."
        assert json.loads(second["tool"][-1])["status"] == "captured"
        assert len(ledger_rows(services, RES)) == 1
    finally:
        services.close()
