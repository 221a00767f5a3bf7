"""The ``contact_address`` hook of both domains (``graph.notify.ContactDirectory``) over Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from graph.db import open_pool
from graph.notify import ContactDirectory
from tests.retail_support import USER as RETAIL_USER
from tests.retail_support import retail_db
from tools.airline.domain import AirlineDomain
from tools.retail import RetailDomain

pytestmark = pytest.mark.postgres

AIRLINE_USER, AIRLINE_EMAIL = "mia_li_3668", "mia.li3818@example.com"
RETAIL_EMAIL = "raj.sanchez2046@example.com"
# What must never reach an e-mail header: a second recipient smuggled in by a line break, a
# display name, a list, something that is not an address at all.
MALFORMED = [
    "mia@example.com\r\nBcc: thief@evil.example",
    "Mia <mia@example.com>",
    "mia@example.com, thief@evil.example",
    "mia at example dot com",
    "mia@localhost",
    "@example.com",
    "",
]


@pytest.fixture
def retail_pool(server_url: str) -> Iterator[Any]:
    with retail_db(server_url) as url:
        p = open_pool(url, max_size=4)
        yield p
        p.close()


def _set_airline_email(pool: Any, value: str) -> None:
    with pool.connection() as conn:
        conn.execute("UPDATE airline_users SET doc = jsonb_set(doc, '{email}', to_jsonb(%s::text))"
                     " WHERE user_id = %s", (value, AIRLINE_USER))


def _set_retail_email(pool: Any, value: str) -> None:
    with pool.connection() as conn:
        conn.execute("UPDATE retail_users SET email = %s, doc = jsonb_set(doc, '{email}', to_jsonb(%s::text))"
                     " WHERE user_id = %s", (value, value, RETAIL_USER))


def test_both_domains_are_contact_directories(pool: Any, retail_pool: Any) -> None:
    # The outbox worker takes a domain's addresses only through this runtime-checked Protocol.
    assert isinstance(AirlineDomain.from_pool(pool=pool), ContactDirectory)
    assert isinstance(RetailDomain.from_pool(pool=retail_pool), ContactDirectory)


def test_airline_address_comes_from_the_profile_row(pool: Any) -> None:
    domain = AirlineDomain.from_pool(pool=pool)
    assert domain.contact_address(AIRLINE_USER) == AIRLINE_EMAIL
    assert domain.contact_address("nobody_0000") is None
    # The row is the source: change it and the answer follows.
    _set_airline_email(pool, "mia.new@example.org")
    assert domain.contact_address(AIRLINE_USER) == "mia.new@example.org"


def test_retail_address_comes_from_the_profile_row(retail_pool: Any) -> None:
    domain = RetailDomain.from_pool(pool=retail_pool)
    assert domain.contact_address(RETAIL_USER) == RETAIL_EMAIL
    assert domain.contact_address("nobody_0000") is None
    _set_retail_email(retail_pool, "raj.new@example.org")
    assert domain.contact_address(RETAIL_USER) == "raj.new@example.org"


@pytest.mark.parametrize("value", MALFORMED)
def test_a_malformed_profile_address_is_never_returned(pool: Any, retail_pool: Any, value: str) -> None:
    _set_airline_email(pool, value)
    _set_retail_email(retail_pool, value)
    assert AirlineDomain.from_pool(pool=pool).contact_address(AIRLINE_USER) is None
    assert RetailDomain.from_pool(pool=retail_pool).contact_address(RETAIL_USER) is None


def test_an_erased_customer_has_no_address(pool: Any, retail_pool: Any) -> None:
    airline, retail = AirlineDomain.from_pool(pool=pool), RetailDomain.from_pool(pool=retail_pool)
    # The domains' own erasure hooks (what ``airlock privacy forget`` runs in its transaction).
    for p, domain, user in ((pool, airline, AIRLINE_USER), (retail_pool, retail, RETAIL_USER)):
        with p.connection() as conn, conn.transaction(), conn.cursor() as cur:
            assert sum(domain.forget_customer(cur, user).values()) >= 1
    assert airline.contact_address(AIRLINE_USER) is None
    assert retail.contact_address(RETAIL_USER) is None
