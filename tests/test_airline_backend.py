"""The airline backend over a real Postgres: loader, read tools, writes, ledger, idempotency."""

from __future__ import annotations

import gzip
import hashlib
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from graph.db import migrate, open_pool
from tools.airline import AIRLINE_TOOLS, AirlineBackend, ToolError, ensure_loaded, langchain_tools
from tools.airline.loader import DB_PATH, read_db
from tools.airline.schemas import parse_args

pytestmark = pytest.mark.postgres

# Task 20 of τ²: mia_li_3668 books JFK -> SEA (HAT136 + HAT039, economy, 1 passenger).
MIA = "mia_li_3668"
MIA_CERT = "certificate_7504069"  # USD 250
MIA_CARD = "credit_card_4421486"
JFK_SEA = [
    {"flight_number": "HAT136", "date": "2024-05-20"},
    {"flight_number": "HAT039", "date": "2024-05-20"},
]
MIA_PAX = [{"first_name": "Mia", "last_name": "Li", "dob": "1990-04-05"}]


def book_args(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "user_id": MIA, "origin": "JFK", "destination": "SEA", "flight_type": "one_way",
        "cabin": "economy", "flights": JFK_SEA, "passengers": MIA_PAX,
        "payment_methods": [{"payment_id": MIA_CERT, "amount": 250},
                            {"payment_id": MIA_CARD, "amount": 5}],
        "total_baggages": 0, "nonfree_baggages": 0, "insurance": "no",
    }
    args.update(overrides)
    return args


@pytest.fixture
def backend(pool: Any) -> AirlineBackend:
    return AirlineBackend(pool=pool)


def ledger(pool: Any, **where: Any) -> list[dict[str, Any]]:
    clauses = " AND ".join(f"{k} = %s" for k in where) or "true"
    with pool.connection() as conn:
        rows = conn.execute(
            f"SELECT charge_id, idempotency_key, user_id, reservation_id, payment_id, kind, "
            f"amount_usd, tool FROM payments_ledger WHERE {clauses} ORDER BY id",
            tuple(where.values()),
        ).fetchall()
    return [dict(r) for r in rows]


def scalar(pool: Any, query: str, *params: Any) -> Any:
    with pool.connection() as conn:
        row = conn.execute(query, params).fetchone()
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


def fare(backend: AirlineBackend, number: str, day: str, cabin: str) -> int:
    return int(backend.fetch_flights([number])[number]["dates"][day]["prices"][cabin])


# --------------------------------------------------------------------------- loader


@pytest.fixture
def empty_db(server_url: str) -> Iterator[str]:
    """A migrated database without the airline data (the shared template already has it)."""
    name = f"airlock_airline_{uuid.uuid4().hex[:10]}"
    admin = make_conninfo(server_url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(server_url, dbname=name)
    try:
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def test_loader_loads_once_even_when_called_concurrently(empty_db: str) -> None:
    pool = open_pool(empty_db, max_size=4)
    try:
        migrate(pool)
        barrier = threading.Barrier(2)

        def load() -> bool:
            barrier.wait()
            return ensure_loaded(pool)

        with ThreadPoolExecutor(2) as ex:
            results = list(ex.map(lambda _: load(), range(2)))
        assert sorted(results) == [False, True]
        assert ensure_loaded(pool) is False
        # The τ² data plus the demo reservation of data/demo.json.
        for table, count in (("airline_flights", 300), ("airline_users", 500),
                             ("airline_reservations", 2001)):
            assert scalar(pool, f"SELECT count(*) FROM {table}") == count
        # Documents are stored unchanged.
        data = read_db()
        backend = AirlineBackend(pool=pool)
        assert backend.fetch_reservation("4WQ150") == data["reservations"]["4WQ150"]
        assert backend.fetch_user(MIA) == data["users"][MIA]
    finally:
        pool.close()


def test_bundled_data_is_the_upstream_file() -> None:
    raw = gzip.decompress(DB_PATH.read_bytes())
    # git blob id of tau2-bench data/tau2/domains/airline/db.json (see data/README.md).
    blob = hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest()
    assert blob == "c6a1e817aa9102c5822e83affb3595acbc312701"
    assert (DB_PATH.parent / "policy.md").is_file()
    assert (DB_PATH.parent / "LICENSE-tau2-bench").is_file()


# --------------------------------------------------------------------------- schemas


def test_tool_registry_and_openai_schemas() -> None:
    assert set(AIRLINE_TOOLS) == {
        "get_user_details", "get_reservation_details", "list_all_airports",
        "search_direct_flight", "search_onestop_flight", "get_flight_status", "calculate",
        "transfer_to_human_agents", "book_reservation", "cancel_reservation",
        "update_reservation_flights", "update_reservation_baggages",
        "update_reservation_passengers", "send_certificate",
    }
    writes = {n for n, s in AIRLINE_TOOLS.items() if s.write}
    assert writes == {"book_reservation", "cancel_reservation", "update_reservation_flights",
                      "update_reservation_baggages", "update_reservation_passengers",
                      "send_certificate"}
    tools = langchain_tools()
    assert [t["function"]["name"] for t in tools] == list(AIRLINE_TOOLS)
    by_name = {t["function"]["name"]: t["function"] for t in tools}
    params = by_name["update_reservation_flights"]["parameters"]
    assert params["additionalProperties"] is False
    assert params["properties"]["cabin"]["enum"] == ["basic_economy", "economy", "business"]
    assert params["properties"]["flights"]["items"]["additionalProperties"] is False
    assert by_name["update_reservation_flights"]["description"]


def test_forged_extra_arguments_fail_validation() -> None:
    with pytest.raises(ToolError, match="Extra inputs"):
        parse_args("update_reservation_baggages", {
            "reservation_id": "YAX4DR", "total_baggages": 1, "nonfree_baggages": 0,
            "payment_id": "credit_card_4938634", "amount": 0})
    with pytest.raises(ToolError, match="Extra inputs"):
        parse_args("update_reservation_flights", {
            "reservation_id": "YAX4DR", "cabin": "economy", "flights": JFK_SEA,
            "payment_id": "x", "insurance": "yes"})
    with pytest.raises(ToolError):
        parse_args("book_reservation", book_args(cabin="first"))
    with pytest.raises(ToolError):
        parse_args("book_reservation", book_args(
            payment_methods=[{"payment_id": MIA_CARD, "amount": -5}]))


# --------------------------------------------------------------------------- read tools


def test_read_tools(backend: AirlineBackend) -> None:
    user = backend.call("get_user_details", {"user_id": MIA})
    assert user["membership"] == "gold" and MIA_CERT in user["payment_methods"]
    with pytest.raises(ToolError, match="not found"):
        backend.call("get_user_details", {"user_id": "nobody_1"})
    assert backend.call("get_reservation_details", {"reservation_id": "4WQ150"})["cabin"] == (
        "business")
    with pytest.raises(ToolError, match="not found"):
        backend.get_reservation_details(reservation_id="ZZZZZZ")
    airports = backend.call("list_all_airports", {})
    assert len(airports) == 20 and {"iata": "SFO", "city": "San Francisco"} in airports

    direct = backend.call("search_direct_flight",
                          {"origin": "JFK", "destination": "SEA", "date": "2024-05-20"})
    assert direct and all(f["origin"] == "JFK" and f["destination"] == "SEA" for f in direct)
    assert all(f["status"] == "available" and f["prices"] for f in direct)

    onestop = backend.call("search_onestop_flight",
                           {"origin": "JFK", "destination": "SEA", "date": "2024-05-20"})
    assert ["HAT136", "HAT039"] in [[a["flight_number"], b["flight_number"]] for a, b in onestop]
    for first, second in onestop:
        assert first["destination"] == second["origin"]
        assert second["scheduled_departure_time_est"] >= (
            first["scheduled_arrival_time_est"].replace("+1", ""))

    assert backend.call("get_flight_status", {"flight_number": "HAT018", "date": "2024-05-11"}) \
        == "delayed"
    with pytest.raises(ToolError):
        backend.get_flight_status(flight_number="HAT018", date="2023-01-01")
    assert backend.call("transfer_to_human_agents", {"summary": "x"}) == "Transfer successful"


@pytest.mark.parametrize(("expression", "expected"), [
    ("2 + 3 * 4", "14.0"), ("(152 + 103) * 2 - 0.5", "509.5"), ("10 / 3", "3.33"),
    ("-4 + +2", "-2.0"),
])
def test_calculate(pool: Any, expression: str, expected: str) -> None:
    assert AirlineBackend(pool=pool).calculate(expression=expression) == expected


@pytest.mark.parametrize("expression", [
    "2 ** 10", "__import__('os')", "1 / 0", "", "3 // 2", "1e5", "(1", "9" * 199 + "*9",
])
def test_calculate_rejects(pool: Any, expression: str) -> None:
    with pytest.raises(ToolError):
        AirlineBackend(pool=pool).calculate(expression=expression)


# --------------------------------------------------------------------------- book_reservation


def test_book_reservation_happy_path(backend: AirlineBackend, pool: Any) -> None:
    seats_before = backend.fetch_flights(["HAT136"])["HAT136"]["dates"]["2024-05-20"][
        "available_seats"]["economy"]
    total = fare(backend, "HAT136", "2024-05-20", "economy") + fare(
        backend, "HAT039", "2024-05-20", "economy")
    assert total == 255
    result = backend.call("book_reservation", book_args())
    assert result["status"] == "captured"
    assert result["reservation_id"] == "HATHAT"
    assert result["amount_usd"] == 255.0
    assert len(result["charge_ids"]) == 2
    assert all(c.startswith("CHG-") for c in result["charge_ids"])

    rows = ledger(pool, reservation_id="HATHAT")
    assert [(r["payment_id"], r["kind"], r["amount_usd"], r["tool"]) for r in rows] == [
        (MIA_CERT, "charge", Decimal("250.00"), "book_reservation"),
        (MIA_CARD, "charge", Decimal("5.00"), "book_reservation"),
    ]
    assert [r["charge_id"] for r in rows] == result["charge_ids"]

    reservation = backend.fetch_reservation("HATHAT")
    assert reservation is not None
    assert reservation["created_at"] == "2024-05-15T15:00:00"
    assert [f["price"] for f in reservation["flights"]] == [152, 103]
    user = backend.fetch_user(MIA)
    assert user is not None
    assert MIA_CERT not in user["payment_methods"]  # a certificate is spent whole
    assert user["reservations"][-1] == "HATHAT"
    seats_after = backend.fetch_flights(["HAT136"])["HAT136"]["dates"]["2024-05-20"][
        "available_seats"]["economy"]
    assert seats_after == seats_before - 1

    # Ids continue deterministically; insurance and paid bags are priced by the backend.
    second = backend.call("book_reservation", book_args(
        insurance="yes", total_baggages=5, nonfree_baggages=2,
        payment_methods=[{"payment_id": MIA_CARD, "amount": 255 + 30 + 100}]))
    assert second["reservation_id"] == "HATHAU"
    assert second["amount_usd"] == 385.0
    assert backend.call("book_reservation", book_args(
        payment_methods=[{"payment_id": MIA_CARD, "amount": 255}]))["reservation_id"] == "HATHAV"


def test_book_reservation_gift_card_balance_goes_down(backend: AirlineBackend, pool: Any) -> None:
    user = "mohamed_silva_9265"
    gift = "gift_card_8020792"
    balance = backend.fetch_user(user)["payment_methods"][gift]["amount"]  # type: ignore[index]
    price = fare(backend, "HAT271", "2024-05-26", "economy")
    card = next(p for p, m in backend.fetch_user(user)["payment_methods"].items()  # type: ignore[index]
                if m["source"] == "credit_card")
    result = backend.book_reservation(
        user_id=user, origin="ORD", destination="PHL", flight_type="one_way", cabin="economy",
        flights=[{"flight_number": "HAT271", "date": "2024-05-26"}],
        passengers=[{"first_name": "A", "last_name": "B", "dob": "1990-01-01"}],
        payment_methods=[{"payment_id": gift, "amount": 10.5},
                         {"payment_id": card, "amount": price - 10.5}],
        total_baggages=0, nonfree_baggages=0, insurance="no",
    )
    assert result["status"] == "captured"
    after = backend.fetch_user(user)["payment_methods"][gift]["amount"]  # type: ignore[index]
    assert after == pytest.approx(balance - 10.5)
    assert [r["amount_usd"] for r in ledger(pool, reservation_id=result["reservation_id"])] == [
        Decimal("10.50"), Decimal(str(price - 10.5)).quantize(Decimal("0.01"))]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"payment_methods": [{"payment_id": MIA_CARD, "amount": 254}]}, "does not add up"),
    ({"payment_methods": [{"payment_id": MIA_CARD, "amount": 300}]}, "does not add up"),
    ({"payment_methods": [{"payment_id": "credit_card_999", "amount": 255}]}, "not found"),
    ({"payment_methods": [{"payment_id": MIA_CERT, "amount": 255}]}, "Not enough balance"),
    ({"payment_methods": [{"payment_id": MIA_CARD, "amount": 100},
                          {"payment_id": MIA_CARD, "amount": 155}]}, "more than once"),
    ({"flights": [{"flight_number": "HAT136", "date": "2024-05-10"}]}, "not available"),
    ({"flights": [{"flight_number": "HAT999", "date": "2024-05-20"}]}, "not found"),
    ({"user_id": "nobody_1"}, "not found"),
    ({"flights": JFK_SEA + JFK_SEA[:1]}, "more than once"),
    ({"passengers": MIA_PAX * 40,
      "payment_methods": [{"payment_id": MIA_CARD, "amount": 255 * 40}]}, "Not enough seats"),
])
def test_book_reservation_errors_charge_nothing(
    backend: AirlineBackend, pool: Any, overrides: dict[str, Any], message: str
) -> None:
    user_before = backend.fetch_user(MIA)
    with pytest.raises(ToolError, match=message):
        backend.call("book_reservation", book_args(**overrides), idempotency_key="k-err")
    assert ledger(pool) == []
    assert backend.fetch_reservation("HATHAT") is None
    assert backend.fetch_user(MIA) == user_before
    # A failed write does not consume its key: the corrected call goes through.
    assert scalar(pool, "SELECT count(*) FROM airline_write_requests") == 0
    assert backend.call("book_reservation", book_args(), idempotency_key="k-err")["status"] == (
        "captured")


# --------------------------------------------------------------------------- cancel_reservation


def test_cancel_reservation_refunds_each_payment(backend: AirlineBackend, pool: Any) -> None:
    before = backend.fetch_reservation("59XX6W")
    assert before is not None
    paid = [(p["payment_id"], p["amount"]) for p in before["payment_history"]]
    result = backend.call("cancel_reservation", {"reservation_id": "59XX6W"})
    assert result["status"] == "refunded"
    assert result["amount_usd"] == float(sum(a for _, a in paid))
    rows = ledger(pool, reservation_id="59XX6W")
    assert [(r["payment_id"], r["kind"], r["amount_usd"]) for r in rows] == [
        (pid, "refund", Decimal(a).quantize(Decimal("0.01"))) for pid, a in paid]
    assert all(r["charge_id"].startswith("RFD-") for r in rows)
    after = backend.fetch_reservation("59XX6W")
    assert after is not None and after["status"] == "cancelled"
    assert after["payment_history"] == before["payment_history"] + [
        {"payment_id": pid, "amount": -a} for pid, a in paid]
    with pytest.raises(ToolError, match="already cancelled"):
        backend.cancel_reservation(reservation_id="59XX6W")
    with pytest.raises(ToolError, match="cancelled"):
        backend.update_reservation_passengers(reservation_id="59XX6W",
                                              passengers=before["passengers"])
    with pytest.raises(ToolError, match="not found"):
        backend.cancel_reservation(reservation_id="NOPE00")
    assert len(ledger(pool, reservation_id="59XX6W")) == len(paid)


# --------------------------------------------------------------------------- update flights


def test_cabin_downgrade_refunds_difference_to_gift_card(backend: AirlineBackend, pool: Any) -> None:
    # τ² task 11: GV1N64 (3 passengers, business) -> basic economy, same flights.
    res = backend.fetch_reservation("GV1N64")
    assert res is not None
    gift = "gift_card_1642017"
    balance = backend.fetch_user(res["user_id"])["payment_methods"][gift]["amount"]  # type: ignore[index]
    new = sum(fare(backend, f["flight_number"], f["date"], "basic_economy") for f in res["flights"])
    old = sum(f["price"] for f in res["flights"])
    expected = (old - new) * len(res["passengers"])
    flights = [{"flight_number": f["flight_number"], "date": f["date"]} for f in res["flights"]]
    result = backend.call("update_reservation_flights", {
        "reservation_id": "GV1N64", "cabin": "basic_economy", "flights": flights,
        "payment_id": gift})
    assert result["status"] == "refunded" and result["amount_usd"] == expected
    assert [(r["kind"], r["amount_usd"], r["payment_id"]) for r in ledger(
        pool, reservation_id="GV1N64")] == [("refund", Decimal(expected), gift)]
    after = backend.fetch_reservation("GV1N64")
    assert after is not None and after["cabin"] == "basic_economy"
    assert after["payment_history"][-1] == {"payment_id": gift, "amount": -expected}
    new_balance = backend.fetch_user(res["user_id"])["payment_methods"][gift]["amount"]  # type: ignore[index]
    assert new_balance == pytest.approx(balance + expected)


def test_flight_change_charges_difference_and_keeps_old_prices(
    backend: AirlineBackend, pool: Any
) -> None:
    # LWTEDF: one passenger, economy, HAT002 on 2024-05-15 (delayed) -> HAT002 on 2024-05-16.
    res = backend.fetch_reservation("LWTEDF")
    assert res is not None
    card = res["payment_history"][0]["payment_id"]
    expected = fare(backend, "HAT002", "2024-05-16", "economy") - res["flights"][0]["price"]
    assert expected > 0
    result = backend.update_reservation_flights(
        reservation_id="LWTEDF", cabin="economy",
        flights=[{"flight_number": "HAT002", "date": "2024-05-16"}], payment_id=card)
    assert result["status"] == "captured" and result["amount_usd"] == expected
    assert [(r["kind"], r["amount_usd"]) for r in ledger(pool, reservation_id="LWTEDF")] == [
        ("charge", Decimal(expected))]

    # A kept segment (same number, date and cabin) keeps its price: no difference, no row.
    same = backend.update_reservation_flights(
        reservation_id="LWTEDF", cabin="economy",
        flights=[{"flight_number": "HAT002", "date": "2024-05-16"}], payment_id=card)
    assert same["status"] == "completed" and same["charge_ids"] == []
    assert len(ledger(pool, reservation_id="LWTEDF")) == 1


@pytest.mark.parametrize(("payment_id", "flights", "message"), [
    ("certificate_x", None, "not found"),
    (None, [{"flight_number": "HAT002", "date": "2024-05-10"}], "not available"),
    (None, [{"flight_number": "HAT002", "date": "2031-01-01"}], "not found on date"),
])
def test_flight_change_errors(
    backend: AirlineBackend, pool: Any, payment_id: str | None,
    flights: list[dict[str, str]] | None, message: str,
) -> None:
    res = backend.fetch_reservation("LWTEDF")
    assert res is not None
    with pytest.raises(ToolError, match=message):
        backend.update_reservation_flights(
            reservation_id="LWTEDF", cabin="business",
            flights=flights or [{"flight_number": "HAT002", "date": "2024-05-16"}],
            payment_id=payment_id or res["payment_history"][0]["payment_id"])
    assert ledger(pool) == []
    assert backend.fetch_reservation("LWTEDF") == res


def test_flight_change_refuses_certificates_and_short_gift_cards(
    backend: AirlineBackend, pool: Any
) -> None:
    user = backend.fetch_user("mia_li_3668")
    assert user is not None
    # mia_li_3668 owns NO6JO3; pay an upgrade with a certificate -> refused.
    res = backend.fetch_reservation("NO6JO3")
    assert res is not None and res["user_id"] == MIA
    flights = [{"flight_number": f["flight_number"], "date": f["date"]} for f in res["flights"]]
    with pytest.raises(ToolError, match="Certificate cannot be used"):
        backend.update_reservation_flights(reservation_id="NO6JO3", cabin=res["cabin"],
                                           flights=flights, payment_id=MIA_CERT)
    # A gift card must cover a positive difference.
    gift_user = backend.fetch_reservation("GV1N64")["user_id"]  # type: ignore[index]
    with pool.connection() as conn:
        conn.execute(
            "UPDATE airline_users SET doc = jsonb_set(doc, "
            "'{payment_methods,gift_card_1642017,amount}', '1.0') WHERE user_id = %s",
            (gift_user,))
    bags = backend.fetch_reservation("GV1N64")
    assert bags is not None
    with pytest.raises(ToolError, match="Gift card balance is not enough"):
        backend.update_reservation_baggages(
            reservation_id="GV1N64", total_baggages=bags["total_baggages"] + 1,
            nonfree_baggages=bags["nonfree_baggages"] + 1, payment_id="gift_card_1642017")
    assert ledger(pool) == []


# --------------------------------------------------------------------------- bags, passengers


def test_baggage_fee_is_computed_from_the_database(backend: AirlineBackend, pool: Any) -> None:
    res = backend.fetch_reservation("YAX4DR")
    assert res is not None and res["nonfree_baggages"] == 0
    card = "credit_card_4938634"
    free = backend.call("update_reservation_baggages", {
        "reservation_id": "YAX4DR", "total_baggages": 2, "nonfree_baggages": 0,
        "payment_id": card})
    assert free["status"] == "completed" and free["amount_usd"] == 0.0
    assert ledger(pool) == []
    paid = backend.call("update_reservation_baggages", {
        "reservation_id": "YAX4DR", "total_baggages": 9, "nonfree_baggages": 3,
        "payment_id": card})
    assert paid["status"] == "captured" and paid["amount_usd"] == 150.0
    again = backend.call("update_reservation_baggages", {
        "reservation_id": "YAX4DR", "total_baggages": 10, "nonfree_baggages": 4,
        "payment_id": card})
    assert again["amount_usd"] == 50.0  # 50 x (new nonfree - old nonfree)
    assert [(r["kind"], r["amount_usd"]) for r in ledger(pool, reservation_id="YAX4DR")] == [
        ("charge", Decimal("150.00")), ("charge", Decimal("50.00"))]
    after = backend.fetch_reservation("YAX4DR")
    assert after is not None
    assert (after["total_baggages"], after["nonfree_baggages"]) == (10, 4)
    with pytest.raises(ToolError, match="Invalid number of bags"):
        backend.update_reservation_baggages(reservation_id="YAX4DR", total_baggages=1,
                                            nonfree_baggages=2, payment_id=card)


def test_update_passengers(backend: AirlineBackend, pool: Any) -> None:
    res = backend.fetch_reservation("YAX4DR")
    assert res is not None and len(res["passengers"]) == 2
    people = [{"first_name": "Ann", "last_name": "Lee", "dob": "1980-01-01"},
              {"first_name": "Bo", "last_name": "Lee", "dob": "1981-01-01"}]
    result = backend.call("update_reservation_passengers",
                          {"reservation_id": "YAX4DR", "passengers": people})
    assert result["status"] == "completed" and result["charge_ids"] == []
    assert backend.fetch_reservation("YAX4DR")["passengers"] == people  # type: ignore[index]
    with pytest.raises(ToolError, match="Number of passengers does not match"):
        backend.call("update_reservation_passengers",
                     {"reservation_id": "YAX4DR", "passengers": people[:1]})
    assert ledger(pool) == []


def test_send_certificate_ids(backend: AirlineBackend, pool: Any) -> None:
    first = backend.call("send_certificate", {"user_id": MIA, "amount": 150})
    second = backend.call("send_certificate", {"user_id": MIA, "amount": 50.5})
    assert first["status"] == "issued" and first["certificate_id"] == "certificate_3221322"
    assert second["certificate_id"] == "certificate_3221323"
    assert first["message"] == (
        "Certificate certificate_3221322 added to user mia_li_3668 with amount 150.")
    methods = backend.fetch_user(MIA)["payment_methods"]  # type: ignore[index]
    assert methods["certificate_3221323"] == {
        "source": "certificate", "id": "certificate_3221323", "amount": 50.5}
    assert ledger(pool) == []  # a certificate is a credit, not a charge or refund
    assert scalar(pool, "SELECT count(*) FROM airline_events WHERE tool = 'send_certificate'") == 2
    with pytest.raises(ToolError, match="not found"):
        backend.send_certificate(user_id="nobody_1", amount=10)


# --------------------------------------------------------------------------- idempotency


def test_replay_with_same_key_is_deduplicated(backend: AirlineBackend, pool: Any) -> None:
    args = {"reservation_id": "YAX4DR", "total_baggages": 9, "nonfree_baggages": 3,
            "payment_id": "credit_card_4938634"}
    first = backend.call("update_reservation_baggages", args, idempotency_key="bags-1")
    replay = backend.call("update_reservation_baggages", args, idempotency_key="bags-1")
    assert first["status"] == "captured"
    assert replay["status"] == "deduplicated" and replay["original_status"] == "captured"
    assert replay["charge_ids"] == first["charge_ids"]
    assert replay["amount_usd"] == first["amount_usd"] == 150.0
    rows = ledger(pool)
    assert len(rows) == 1 and rows[0]["idempotency_key"] == "bags-1"
    # Same key, another tool: refused rather than silently returning the wrong result.
    with pytest.raises(ToolError, match="another action"):
        backend.call("cancel_reservation", {"reservation_id": "YAX4DR"},
                     idempotency_key="bags-1")
    # Book and cancel replays as well.
    booked = backend.call("book_reservation", book_args(), idempotency_key="book-1")
    assert backend.call("book_reservation", book_args(), idempotency_key="book-1")[
        "charge_ids"] == booked["charge_ids"]
    assert backend.fetch_reservation("HATHAU") is None
    cancelled = backend.call("cancel_reservation", {"reservation_id": "HATHAT"},
                             idempotency_key="cancel-1")
    again = backend.call("cancel_reservation", {"reservation_id": "HATHAT"},
                         idempotency_key="cancel-1")
    assert again["status"] == "deduplicated" and again["charge_ids"] == cancelled["charge_ids"]
    assert len(ledger(pool, reservation_id="HATHAT")) == 4  # 2 charges + 2 refunds
    stored = scalar(pool, "SELECT result FROM airline_write_requests WHERE idempotency_key = %s",
                    "cancel-1")
    assert stored["status"] == "refunded"


def test_expired_key_runs_again(backend: AirlineBackend, pool: Any) -> None:
    args = {"user_id": MIA, "amount": 100.0}
    first = backend.call("send_certificate", args, idempotency_key="cert-1")
    assert backend.call("send_certificate", args, idempotency_key="cert-1")["status"] == (
        "deduplicated")
    with pool.connection() as conn:
        conn.execute("UPDATE airline_write_requests SET created_at = now() - interval '25 hours'")
    again = backend.call("send_certificate", args, idempotency_key="cert-1")
    assert again["status"] == "issued"
    assert (first["certificate_id"], again["certificate_id"]) == (
        "certificate_3221322", "certificate_3221323")
    assert backend.call("send_certificate", args, idempotency_key="cert-1")[
        "certificate_id"] == "certificate_3221323"


@pytest.mark.parametrize("tool", ["update_reservation_baggages", "book_reservation"])
def test_concurrent_calls_with_one_key_charge_once(
    backend: AirlineBackend, pool: Any, tool: str
) -> None:
    args: dict[str, Any] = (
        {"reservation_id": "YAX4DR", "total_baggages": 9, "nonfree_baggages": 3,
         "payment_id": "credit_card_4938634"}
        if tool == "update_reservation_baggages"
        else book_args(payment_methods=[{"payment_id": MIA_CARD, "amount": 255}])
    )
    barrier = threading.Barrier(20)

    def call(_: int) -> dict[str, Any]:
        barrier.wait()
        return backend.call(tool, args, idempotency_key="same-key")  # type: ignore[no-any-return]

    with ThreadPoolExecutor(20) as ex:
        results = list(ex.map(call, range(20)))
    statuses = sorted(r["status"] for r in results)
    assert statuses == ["captured"] + ["deduplicated"] * 19
    assert len({tuple(r["charge_ids"]) for r in results}) == 1
    assert len(ledger(pool)) == 1
    assert scalar(pool, "SELECT count(*) FROM airline_events") == 1
    if tool == "book_reservation":
        assert backend.fetch_reservation("HATHAU") is None


def test_concurrent_bookings_without_key_get_distinct_ids(
    backend: AirlineBackend, pool: Any
) -> None:
    barrier = threading.Barrier(5)

    def call(_: int) -> str:
        barrier.wait()
        result = backend.call("book_reservation",
                              book_args(payment_methods=[{"payment_id": MIA_CARD, "amount": 255}]))
        return str(result["reservation_id"])

    with ThreadPoolExecutor(5) as ex:
        ids = sorted(ex.map(call, range(5)))
    assert ids == ["HATHAT", "HATHAU", "HATHAV", "HATHAW", "HATHAX"]
    assert len(ledger(pool)) == 5
