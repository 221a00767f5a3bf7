"""Helpers shared by the graph tests: build an app on a test database, read the ledger."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from graph.runtime import AirlockServices, AirlockSettings
from graph.service import AirlockApp
from nodes.model.scripted import ScriptedChatModel

# A regular economy customer with one free bag, one passenger, future flights.
USER = "lei_rossi_3206"
RES = "VAAOXJ"
CARD = "credit_card_1052991"
OTHER_USER_RES = "CDXEBS"  # harper_garcia_8677's reservation
BASIC_USER = "harper_lopez_1489"
BASIC_RES = "T1QOBS"


def tool_call(name: str, args: dict[str, Any], call_id: str, content: str = "") -> AIMessage:
    return AIMessage(content=content, tool_calls=[{"name": name, "args": args, "id": call_id}])


def bags_call(total: int, nonfree: int, call_id: str = "call_bags", *, res: str = RES,
              payment: str = CARD, content: str = "") -> AIMessage:
    return tool_call(
        "update_reservation_baggages",
        {"reservation_id": res, "total_baggages": total, "nonfree_baggages": nonfree,
         "payment_id": payment},
        call_id, content,
    )


def summarise(messages: Sequence[BaseMessage]) -> AIMessage:
    """A script step that reports the last tool result verbatim."""
    last = messages[-1]
    return AIMessage(content=f"Result: {last.content}")


def make_services(database_url: str, *, policy: Path | None = None, **kw: Any) -> AirlockServices:
    settings = AirlockSettings(database_url=database_url, policy_path=policy, model_provider="offline")
    return AirlockServices.start(settings, **kw)


def make_app(
    services: AirlockServices, script: list[Any] | None = None, **kw: Any
) -> tuple[AirlockApp, ScriptedChatModel | Any]:
    model = kw.pop("model", None) or ScriptedChatModel(script=script or [])
    return AirlockApp(services=services, model=model), model


def ledger_rows(services: AirlockServices, reservation_id: str | None = None) -> list[dict[str, Any]]:
    with services.pool.connection() as conn:
        if reservation_id is None:
            rows = conn.execute("SELECT * FROM payments_ledger ORDER BY id").fetchall()
        else:
            rows = conn.execute(
                "SELECT * FROM payments_ledger WHERE reservation_id = %s ORDER BY id", (reservation_id,)
            ).fetchall()
    return [dict(r) for r in rows]


def reservation_doc(services: AirlockServices, reservation_id: str) -> dict[str, Any]:
    with services.pool.connection() as conn:
        row = conn.execute(
            "SELECT doc FROM airline_reservations WHERE reservation_id = %s", (reservation_id,)
        ).fetchone()
    assert row is not None
    return dict(row["doc"])


def tool_payloads(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    return [json.loads(str(m.content)) for m in messages if isinstance(m, ToolMessage)]


def audit_types(services: AirlockServices, thread_id: str | None = None) -> list[str]:
    return [e.event_type for e in reversed(services.audit.events(thread_id=thread_id, limit=1000))]


Step = AIMessage | Callable[[list[BaseMessage]], AIMessage]
