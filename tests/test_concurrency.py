"""Exactly-once under concurrency: 50 simultaneous executions of the same write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from nodes.model.scripted import ScriptedChatModel
from tests.helpers import RES, USER, bags_call, ledger_rows, make_app, make_services, tool_payloads

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]


def _reactive(messages):
    """Call the bag tool after the customer speaks; report the result after the tool answers."""
    last = messages[-1]
    if isinstance(last, HumanMessage):
        return bags_call(4, 3, "call_bags")
    assert isinstance(last, ToolMessage)
    return AIMessage(content=f"Result: {last.content}")


def test_fifty_concurrent_confirmed_writes_make_one_ledger_row(database_url):
    services = make_services(database_url)
    try:
        model = ScriptedChatModel(script=[_reactive] * 200)
        app, _ = make_app(services, model=model)
        threads = [app.new_thread(user_id=USER) for _ in range(50)]
        with ThreadPoolExecutor(max_workers=25) as pool:
            paused = list(pool.map(lambda t: app.send(thread_id=t, user_id=USER, text="add 3 bags to VAAOXJ"), threads))
        gates = [(r.thread_id, r.pending[0]) for r in paused if r.pending]
        assert gates, "at least the first requests pause at the confirm gate"

        def confirm(item):
            thread, gate = item
            return app.answer_confirm(thread_id=thread, user_id=USER, interrupt_id=gate.id, action="confirm")

        with ThreadPoolExecutor(max_workers=25) as pool:
            done = list(pool.map(confirm, gates))
        assert all(r.messages for r in done), [(r.pending, r.notice) for r in done if not r.messages]
        statuses = [tool_payloads(r.messages)[-1]["status"] for r in done]
        statuses += [tool_payloads(r.messages)[-1]["status"] for r in paused if not r.pending]
        assert len(statuses) == 50
        assert statuses.count("captured") == 1
        assert statuses.count("deduplicated") == 49
        rows = ledger_rows(services, RES)
        assert len(rows) == 1 and float(rows[0]["amount_usd"]) == 150.0
        charge_ids = {tuple(tool_payloads(r.messages)[-1]["charge_ids"]) for r in done}
        assert charge_ids == {(rows[0]["charge_id"],)}
    finally:
        services.close()


WORKER = """
import json, sys
from graph.runtime import AirlockServices, AirlockSettings
from nodes.guardrails.idempotency import IdempotencyStore, idempotency_key
from tools.airline.backend import AirlineBackend
url = sys.argv[1]
from graph.db import open_pool
pool = open_pool(url, max_size=2)
store = IdempotencyStore(pool=pool)
args = {"reservation_id": "VAAOXJ", "total_baggages": 4, "nonfree_baggages": 3, "payment_id": "credit_card_1052991"}
key = idempotency_key("update_reservation_baggages", "lei_rossi_3206", args, sorted(args))
claim = store.claim(key, tool="update_reservation_baggages", user_id="lei_rossi_3206", wait_timeout=60)
if claim.owned:
    result = AirlineBackend(pool=pool).call("update_reservation_baggages", args, idempotency_key=key)
    store.complete(key, claim.token, result, ttl=3600)
    print(json.dumps({"owned": True, "result": result}))
else:
    print(json.dumps({"owned": False, "result": claim.result}))
"""


def test_ten_processes_claim_the_same_key_once(database_url):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, database_url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT) for _ in range(10)]
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert sum(o["owned"] for o in outputs) == 1
    assert len({tuple(o["result"]["charge_ids"]) for o in outputs}) == 1
    services = make_services(database_url)
    try:
        assert len(ledger_rows(services, RES)) == 1
    finally:
        services.close()
