"""Idempotency keys for writes: claim a key once, and fence off an attempt whose outcome is unknown.

The statements are the engine's (:mod:`graph.write_fence`); this names the airline's tables.
"""

from __future__ import annotations

from graph.write_fence import DEFAULT_IDEMPOTENCY_TTL, FENCED, WriteRequests
from tools.airline.errors import ToolError

__all__ = ["DEFAULT_IDEMPOTENCY_TTL", "FENCED", "WRITE_REQUESTS"]

#: The airline's write requests; a write tags its ledger and event rows with the conversation.
WRITE_REQUESTS = WriteRequests(
    "airline_write_requests", error=ToolError, tagged=("payments_ledger", "airline_events")
)
