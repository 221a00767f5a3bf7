"""No code path holds an app-pool connection while it waits for another one.

A write transaction holds a connection (and the rows it locked) until it commits. If anything it
runs before the commit takes a second connection from the same pool — the tool-result PII guard
storing a value in the vault did — then enough concurrent writes waiting on one row hold every
connection, the holder waits for a connection, and every customer waits until the pool's
timeout fires (CI: 27 confirmations stuck behind one for minutes). With a pool of one
connection, any such nesting cannot get its second connection, so a confirmed write whose
result is masked must still complete.
"""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage

from graph.runtime import AirlockServices, AirlockSettings
from tests.helpers import RES, USER, make_app, tool_call, tool_payloads

pytestmark = pytest.mark.postgres


def test_a_confirmed_write_with_a_masked_result_completes_on_a_one_connection_pool(database_url, tmp_path):
    # The pool timeout is a hang guard: a nested checkout fails with PoolTimeout after it.
    services = AirlockServices.start(AirlockSettings(
        database_url=database_url, model_provider="offline", pool_max_size=1, pool_timeout=15,
        data_dir=tmp_path / "data"))
    try:
        app, _ = make_app(services, [
            tool_call("update_reservation_passengers", {
                "reservation_id": RES,
                "passengers": [{"first_name": "Lei", "last_name": "Rossi", "dob": "1961-07-19"}],
            }, "call_pax"),
            AIMessage(content="Updated."),
        ])
        thread = app.new_thread(user_id=USER)
        paused = app.send(thread_id=thread, user_id=USER, text=f"Please fix the passenger on {RES}.")
        assert [p.kind for p in paused.pending] == ["confirm"]
        done = app.answer_confirm(thread_id=thread, user_id=USER, interrupt_id=paused.pending[0].id,
                                  action="confirm")
        [result] = [p for p in tool_payloads(done.messages) if p.get("status") != "awaiting_confirmation"][-1:]
        assert result["status"] == "completed", result
        assert "<PERSON_" in str(result)  # the result was masked: the vault stored the names
    finally:
        services.close()
