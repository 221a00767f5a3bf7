"""The airline backend: τ²-bench tool semantics over Postgres, with a payments ledger.

Every write runs in one transaction that locks the rows it changes (``SELECT ... FOR UPDATE``),
appends one ``payments_ledger`` row per charge or refund, records an ``airline_events`` row, and,
when given an idempotency key, claims that key in ``airline_write_requests`` first, so a retried
or concurrent call with the same key waits for the first and returns its stored result
(``status: "deduplicated"``) without charging again.

Amounts always come from :mod:`tools.airline.pricing` applied to the database, never from the
caller. Deliberate differences from τ² (all refuse something τ² would let through):

* a reservation that is already cancelled cannot be cancelled (τ² would refund it twice) or
  changed;
* a booking needs at least one flight and one passenger, positive payment amounts, and each
  payment method at most once (τ² would let a negative amount top up a gift card);
* certificate ids continue past ``certificate_3221324`` instead of failing after three.
"""

from tools.airline.backend.core import DEFAULT_NOW, WriteHooks
from tools.airline.backend.facade import AirlineBackend
from tools.airline.backend.idempotency import DEFAULT_IDEMPOTENCY_TTL, FENCED
from tools.airline.backend.read_tools import AIRPORTS
from tools.airline.backend.reads import CursorReads

__all__ = [
    "AIRPORTS",
    "DEFAULT_IDEMPOTENCY_TTL",
    "DEFAULT_NOW",
    "FENCED",
    "AirlineBackend",
    "CursorReads",
    "WriteHooks",
]
