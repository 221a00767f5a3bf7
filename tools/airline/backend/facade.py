"""The airline backend: the read and write tools, dispatch, snapshot reads and reconciling."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tools.airline.backend.core import WriteHooks
from tools.airline.backend.idempotency import WRITE_REQUESTS
from tools.airline.backend.read_tools import ReadTools
from tools.airline.backend.write_tools import WriteTools
from tools.airline.schemas import AIRLINE_TOOLS, parse_args

__all__ = ["AirlineBackend"]


class AirlineBackend(ReadTools, WriteTools):
    """The τ² airline tools over Postgres (see the module docstring for the guarantees).

    Args:
        pool: The application's pool (see docs/CONTRACTS.md).
        now: The simulated clock; τ²'s 2024-05-15 15:00 EST by default.
        idempotency_ttl: How long (wall-clock) an executed key keeps answering
            ``deduplicated``. Matches the policy's idempotency ``ttl``, so an identical request
            made deliberately a day later (the graph derives keys from the arguments) runs again.
    """

    def call(self, tool: str, args: Mapping[str, Any] | None, *,
             idempotency_key: str | None = None, hooks: WriteHooks | None = None) -> Any:
        """Validate ``args`` against the tool's schema and run the tool.

        Args:
            tool: A name from :data:`tools.airline.schemas.AIRLINE_TOOLS`.
            args: The tool arguments (as the model sent them).
            idempotency_key: Passed to write tools; ignored by read tools.
            hooks: Lock, re-verify and record inside a write's transaction (write tools only).

        Raises:
            ToolError: On unknown tools, invalid arguments and domain errors.
        """
        model = parse_args(tool, args)
        kwargs = model.model_dump()
        if AIRLINE_TOOLS[tool].write:
            kwargs["idempotency_key"] = idempotency_key
            kwargs["hooks"] = hooks
        method: Callable[..., Any] = getattr(self, tool)
        return method(**kwargs)

    def reconcile(self, idempotency_key: str, *, wait: float = 10.0) -> dict[str, Any] | None:
        """Settle a write whose outcome is unknown: return its stored result, or fence it off.

        The fence inserts the key as ``fenced`` in ``airline_write_requests``. If the original
        attempt is still in flight, the insert waits for it (up to ``wait`` seconds): a commit
        means the write happened and its result is returned; a roll-back (or an attempt that
        never started) means the fence wins, and the late attempt, when it arrives, finds the
        key taken and changes nothing. Either way the answer is final.

        Raises:
            ToolError: When the in-flight attempt did not finish within ``wait``.
        """
        return WRITE_REQUESTS.fence(self._pool, idempotency_key, wait=wait)
