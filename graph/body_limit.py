"""An ASGI middleware that refuses request bodies over a size limit (413) before the app reads them.

Used in front of the Gradio app (``ui/security.py``) and the LangGraph server
(``graph/studio_http.py``). A declared ``Content-Length`` over the limit is refused at once; a
body sent without one (chunked) is counted as it arrives and refused as soon as it passes the
limit, so neither a big message nor a slow endless one reaches a handler.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from graph.errors import AirlockError

__all__ = ["DEFAULT_MAX_BODY_BYTES", "MAX_BODY_ENV", "BodyLimitMiddleware", "max_body_bytes"]

MAX_BODY_ENV = "AIRLOCK_MAX_BODY_BYTES"
DEFAULT_MAX_BODY_BYTES = 1_048_576
_MIN, _MAX = 16_384, 100 * 1_048_576

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimitConfigError(AirlockError, ValueError):
    """``AIRLOCK_MAX_BODY_BYTES`` is not a whole number in the accepted range."""


def max_body_bytes(environ: Mapping[str, str] | None = None) -> int:
    """Return the body limit from ``AIRLOCK_MAX_BODY_BYTES`` (default 1 MiB), validated.

    Raises:
        BodyLimitConfigError: If the value is not a whole number between 16384 and 104857600.
    """
    env = os.environ if environ is None else environ
    raw = (env.get(MAX_BODY_ENV) or "").strip()
    if not raw:
        return DEFAULT_MAX_BODY_BYTES
    if not raw.isdigit() or not _MIN <= int(raw) <= _MAX:
        raise BodyLimitConfigError(f"{MAX_BODY_ENV}={raw!r}: expected a whole number of bytes "
                                   f"between {_MIN} and {_MAX}")
    return int(raw)


class BodyLimitMiddleware:
    """Refuse HTTP request bodies larger than ``max_bytes`` with 413 and a JSON ``detail``."""

    def __init__(self, app: ASGIApp, max_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_body_bytes() if max_bytes is None else max_bytes

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": f"request body too large (limit {self.max_bytes} bytes; "
                                     f"set {MAX_BODY_ENV} to change it)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass a request on, counting its body."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers") or []:
            if bytes(key).lower() == b"content-length":
                declared = bytes(value).strip()
                if not declared.isdigit() or int(declared) > self.max_bytes:
                    await self._refuse(send)
                    return
        received = 0
        too_large = False
        started = False

        async def counted() -> Message:
            nonlocal received, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message.get("type") == "http.request":
                received += len(message.get("body") or b"")
                if received > self.max_bytes:
                    # Tell the app the client left: whatever it does next, it gets no more body.
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if too_large:
                return  # the app's answer to a cut-off body is replaced by the 413 below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except Exception:
            if not too_large:
                raise
        if too_large and not started:
            await self._refuse(send)
