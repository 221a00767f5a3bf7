"""Helpers shared by the graph tests: build an app on a test database, read the ledger."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
import yaml
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

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


def policy_with_guards(tmp_path: Path, **guards: Any) -> Path:
    """Write the airline policy with the named guard pipelines replaced; return its path."""
    from tools.airline import POLICY_PATH

    data = yaml.safe_load(POLICY_PATH.read_text())
    data["guards"].update(guards)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


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


# -- integrity tests (issue 7): a reactive scripted model, lock-based freeze points ------------

REQUEST_TAG = re.compile(r"\br(\d+)\b")


def reactive_model(plans: Mapping[int, list[dict[str, Any]]], *, calls: int = 5000) -> ScriptedChatModel:
    """Return a model that answers "... request rN" with the tool calls ``plans[N]``.

    The newest customer message names the plan, so one model can serve many threads at once
    (in threads or processes); after a tool result it reports that result verbatim.
    """

    def step(messages: list[BaseMessage]) -> AIMessage:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            return AIMessage(content=f"Result: {last.content}")
        human = next(m for m in reversed(messages) if isinstance(m, HumanMessage))
        match = REQUEST_TAG.search(str(human.content))
        if match is None or int(match[1]) not in plans:
            return AIMessage(content="How can I help?")
        n = int(match[1])
        # Ids unique per thread and per turn, as a well-behaved model would send them.
        turn = sum(1 for m in messages if isinstance(m, HumanMessage))
        return AIMessage(content="", tool_calls=[
            {"name": c["name"], "args": dict(c["args"]), "id": f"call_r{n}_t{turn}_{k}"}
            for k, c in enumerate(plans[n])
        ])

    return ScriptedChatModel(script=[step] * calls)


def bags_plan(total: int, nonfree: int, *, res: str = RES, payment: str = CARD) -> dict[str, Any]:
    """Return one bag-update tool call as plain data."""
    return {"name": "update_reservation_baggages",
            "args": {"reservation_id": res, "total_baggages": total, "nonfree_baggages": nonfree,
                     "payment_id": payment}}


def policy_copy(tmp_path: Path, *, timeout: str | None = None, wait_timeout: str | None = None,
                retries: int | None = None) -> Path:
    """Write the airline policy with changed resilience / idempotency settings; return its path."""
    from tools.airline import POLICY_PATH

    doc = yaml.safe_load(Path(POLICY_PATH).read_text(encoding="utf-8"))
    for chain in doc["tools"].values():
        for guardrail in chain:
            if guardrail["type"] == "guardrail.resilience":
                if timeout is not None:
                    guardrail["timeout"] = timeout
                if retries is not None:
                    guardrail["retries"] = retries
            if guardrail["type"] == "guardrail.idempotency" and wait_timeout is not None:
                guardrail["waitTimeout"] = wait_timeout
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


class HeldLock:
    """A lock held by the test in its own connection (a transaction left open) until released."""

    def __init__(self, database_url: str, statement: str, params: Sequence[Any] = ()) -> None:
        self.conn = psycopg.connect(database_url)
        self.conn.execute(statement, tuple(params))  # opens the transaction that holds the lock
        self.pid = self.conn.info.backend_pid

    def release(self) -> None:
        """End the transaction (the lock goes) and close the connection."""
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()

    def __enter__(self) -> HeldLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_waiters(database_url: str, *, exclude: Sequence[int] = ()) -> list[int]:
    """Return the pids of the backends of this database waiting for a heavyweight lock."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
        ).fetchall()
    return [r[0] for r in rows if r[0] not in exclude]


def wait_until(predicate: Callable[[], bool], what: str, *, deadline_s: float = 120.0) -> None:
    """Poll a real condition until it holds; the deadline only turns a hang into a failure."""
    end = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.01)


def executed_results(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """Return the tool results that say a write was executed (not deduplicated, not refused)."""
    out = []
    for payload in tool_payloads(messages):
        if payload.get("status") in {"captured", "refunded", "completed", "issued"}:
            out.append(payload)
    return out


class FakeClock:
    """A clock the test moves instead of sleeping (shared by several 'processes' when passed to each)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now
