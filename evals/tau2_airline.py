"""The airline's part of the τ² task replay (``evals.tau2_replay``): tasks, state, answers, violations.

Uses the domain's public entry points only (``tools.airline``: the loader, the backend, the tool
registry and the shipped policy), so it keeps working when the domain's modules move.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

from evals.tau2_replay import (
    SHARED_DATA,
    Action,
    ReplayError,
    Setup,
    StateTable,
    Task,
    TauReplay,
    Violation,
    column_setup,
    common_variants,
    first_column,
    first_person,
    with_args,
)

__all__ = ["AirlineReplay", "first_person", "truthful_answer"]

TASKS_PATH = SHARED_DATA / "airline" / "tasks" / "tau2_tasks.json"
_USER_ID = re.compile(r"user id is:?\s*['\"]?([a-z]+_[a-z]+_\d+)", re.IGNORECASE)
#: Tools whose arguments name a reservation (ownership and status rules apply).
_RESERVATION_TOOLS = ("get_reservation_details", "cancel_reservation", "update_reservation_flights",
                      "update_reservation_baggages", "update_reservation_passengers")

# What the τ² customer is told, read for the questions the policy asks (tools.airline.stated).
# Only what the instructions say counts: with no reason given, the answer is "another reason".
_REASONS = (
    ("health", re.compile(r"\b(sick|unwell|ill|health|hospital|surgery|medical)\b", re.IGNORECASE)),
    ("weather", re.compile(r"\b(weather|storm|hurricane|snow)\b", re.IGNORECASE)),
    ("airline_cancelled", re.compile(r"\bairline cancell?ed\b|\bflight (?:was|got) cancell?ed\b", re.IGNORECASE)),
    ("change_of_plan", re.compile(r"\b(change of plans?|plans? (?:have )?changed)\b", re.IGNORECASE)),
)
_DISPUTES = re.compile(r"\b(proceed anyway|insist|persistent|do not accept|don't accept|dispute)\b", re.IGNORECASE)
_COMPENSATION = re.compile(r"\bcompensat", re.IGNORECASE)


def truthful_answer(instructions: str, question_id: str) -> str:
    """Return the choice the τ² customer picks for a stated question, from their instructions.

    Raises:
        ReplayError: A question this replay does not know (a new one must be taught, not guessed).
    """
    if question_id == "cancel_reason":
        return next((value for value, pattern in _REASONS if pattern.search(instructions)), "other")
    if question_id == "customer_disputes":
        return "dispute" if _DISPUTES.search(instructions) else "accept"
    if question_id == "user_asked_compensation":
        return "yes" if _COMPENSATION.search(instructions) else "no"
    raise ReplayError(f"the replay has no truthful answer for question {question_id!r}")


class AirlineReplay(TauReplay):
    """The airline domain as :class:`evals.tau2_replay.ReplayDomain`."""

    name = "airline"
    tasks_path: Path = TASKS_PATH
    package_name = "tools.airline"
    backend_name = "AirlineBackend"
    # Every table a tool writes, without what is generated: serial ids, the random charge ids,
    # idempotency keys, conversation ids and wall-clock timestamps. Reservation and certificate
    # ids and a booking's created_at come from the simulated clock and sequences, so they stay.
    state_tables = (
        StateTable(table="airline_users", key="user_id", value="doc"),
        StateTable(table="airline_reservations", key="reservation_id", value="doc"),
        StateTable(table="airline_flights", key="flight_number", value="doc"),
        StateTable(table="payments_ledger",
                   key="concat_ws('|', user_id, reservation_id, tool, payment_id, kind, amount_usd)",
                   value="amount_usd"),
        StateTable(table="airline_events", key="concat_ws('|', user_id, reservation_id, tool)",
                   value="jsonb_build_array(before, after)"),
    )

    def customer(self, raw: Mapping[str, Any], actions: Sequence[Action]) -> str:
        """Return the user id the instructions give, else the one the actions name.

        Raises:
            ReplayError: Neither names a customer.
        """
        scenario = (raw.get("user_scenario") or {}).get("instructions") or {}
        match = _USER_ID.search(str(scenario.get("known_info") or ""))
        user_id = match[1] if match else next(
            (str(a.args["user_id"]) for a in actions if "user_id" in a.args), "")
        if not user_id:
            raise ReplayError(f"task {raw.get('id')}: no customer id in its instructions")
        return user_id

    def truthful_answer(self, instructions: str, question_id: str) -> str:
        """Return the choice the τ² customer picks (see :func:`truthful_answer`)."""
        return truthful_answer(instructions, question_id)

    # -- violating variants ------------------------------------------------------------------

    def violations(self, task: Task, index: int, pool: ConnectionPool) -> list[Violation]:
        """Return the variants of one action: who, status, forged values, consent.

        Reads get the other-customer variant only (and only those that name a customer's
        record); writes get every kind that applies to the tool.
        """
        action = task.actions[index]
        other = _other_customer(pool, task.user_id, action)
        write = self.is_write(action)
        out = common_variants(task, action, other_user=str(other["user_id"]), write=write,
                              names_record=action.name in _RESERVATION_TOOLS or "user_id" in action.args)
        if not write:
            return out
        me = task.user_id
        args = action.args
        if action.name in _RESERVATION_TOOLS:
            out.append(Violation(kind="wrong-status", label="the reservation is cancelled",
                                 action=action, user_id=me, setup=_cancelled(str(args["reservation_id"]))))
            out.append(Violation(kind="forged", label=f"another customer's reservation {other['reservation_id']}",
                                 action=with_args(action, reservation_id=other["reservation_id"]), user_id=me))
        if action.name == "book_reservation":
            first = args["flights"][0]
            out.append(Violation(kind="wrong-status",
                                 label=f"flight {first['flight_number']} on {first['date']} is cancelled",
                                 action=action, user_id=me,
                                 setup=_flight_cancelled(str(first["flight_number"]), str(first["date"]))))
            payments = copy.deepcopy(args["payment_methods"])
            payments[0]["amount"] = round(float(payments[0]["amount"]) - 1.0, 2)
            out.append(Violation(kind="forged", label="a payment amount USD 1 short of the price",
                                 action=with_args(action, payment_methods=payments), user_id=me))
            stolen = copy.deepcopy(args["payment_methods"])
            stolen[0]["payment_id"] = other["card"]
            out.append(Violation(kind="forged", label=f"another customer's card {other['card']}",
                                 action=with_args(action, payment_methods=stolen), user_id=me))
            extra = 5 * len(args["passengers"])
            out.append(Violation(kind="forged", label=f"{extra} more free bags than paid for",
                                 action=with_args(action, total_baggages=int(args["total_baggages"]) + extra),
                                 user_id=me))
        if action.name in ("update_reservation_flights", "update_reservation_baggages"):
            out.append(Violation(kind="forged", label=f"another customer's card {other['card']}",
                                 action=with_args(action, payment_id=other["card"]), user_id=me))
        if action.name == "update_reservation_flights":
            flights = copy.deepcopy(args["flights"])
            flights[0]["flight_number"] = "HAT999"
            out.append(Violation(kind="forged", label="a flight number that does not exist",
                                 action=with_args(action, flights=flights), user_id=me))
        if action.name == "update_reservation_baggages":
            extra = 5 * _passenger_count(pool, str(args["reservation_id"]))
            out.append(Violation(kind="forged", label=f"{extra} more free bags than paid for",
                                 action=with_args(action, total_baggages=int(args["total_baggages"]) + extra),
                                 user_id=me))
        if action.name == "update_reservation_passengers":
            people = [*copy.deepcopy(args["passengers"]), copy.deepcopy(args["passengers"][0])]
            out.append(Violation(kind="forged", label="one passenger more than the reservation has",
                                 action=with_args(action, passengers=people), user_id=me))
        return out


def _other_customer(pool: ConnectionPool, user_id: str, action: Action) -> dict[str, Any]:
    """Return another customer (not the task's, not the record's owner) with a card and an active reservation."""
    owner = user_id
    with pool.connection() as conn:
        if "reservation_id" in action.args:
            row = conn.execute("SELECT user_id FROM airline_reservations WHERE reservation_id = %s",
                               (action.args["reservation_id"],)).fetchone()
            owner = str(first_column(row)) if row is not None else user_id
        rows = conn.execute(
            "SELECT u.user_id, u.doc, min(r.reservation_id) AS rid FROM airline_users u"
            " JOIN airline_reservations r ON r.user_id = u.user_id AND r.doc->>'status' IS NULL"
            " WHERE u.user_id <> ALL(%s) GROUP BY u.user_id, u.doc ORDER BY u.user_id LIMIT 20",
            ([user_id, owner],),
        ).fetchall()
    for row in rows:
        data = dict(row) if isinstance(row, Mapping) else {"user_id": row[0], "doc": row[1], "rid": row[2]}
        cards = sorted(k for k, m in (data["doc"].get("payment_methods") or {}).items()
                       if m.get("source") == "credit_card")
        if cards:
            return {"user_id": data["user_id"], "card": cards[0], "reservation_id": data["rid"]}
    raise ReplayError("no other customer with a credit card and an active reservation in the data")


def _passenger_count(pool: ConnectionPool, reservation_id: str) -> int:
    with pool.connection() as conn:
        row = conn.execute("SELECT jsonb_array_length(doc->'passengers') FROM airline_reservations"
                           " WHERE reservation_id = %s", (reservation_id,)).fetchone()
    return max(1, int(first_column(row))) if row is not None else 1


def _cancelled(reservation_id: str) -> Setup:
    """Return a setup that marks the reservation cancelled (and an undo that restores its document)."""
    return column_setup("airline_reservations", "reservation_id", reservation_id, "doc",
                        "jsonb_set(doc, '{status}', '\"cancelled\"')",
                        missing=f"reservation {reservation_id} is not in the data")


def _flight_cancelled(number: str, day: str) -> Setup:
    """Return a setup that marks one flight date cancelled by the airline (and its undo)."""
    return column_setup("airline_flights", "flight_number", number, "doc",
                        "jsonb_set(doc, %s, '\"cancelled\"')", (["dates", day, "status"],),
                        missing=f"flight {number} is not in the data")
