"""Rate limits per user and per client IP (the ``limits`` package), and the request size limit."""

from __future__ import annotations

import json
import math
import time

import anyio
from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ui.api.problems import PROBLEM_JSON, Problem
from ui.api.settings import ServeSettings

__all__ = ["BodySizeLimit", "IpRateLimit", "RateLimits", "client_ip"]

# Probes and scrapes are not limited: an orchestrator must always reach them.
_EXEMPT = ("/healthz", "/readyz", "/metrics")


class RateLimits:
    """Moving-window limits in Redis (shared by every process) or in memory (this process)."""

    def __init__(self, settings: ServeSettings) -> None:
        uri = settings.redis_url or "memory://"
        self.storage = storage_from_string(uri)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.per_user: list[RateLimitItem] = parse_many(settings.rate_user)
        self.per_ip: list[RateLimitItem] = parse_many(settings.rate_ip)
        self.backend = "redis" if settings.redis_url else "memory"

    def _hit(self, items: list[RateLimitItem], *keys: str) -> float | None:
        """Return seconds to wait when a limit is exceeded, else None."""
        for item in items:
            if not self.limiter.hit(item, "airlock-api", *keys):
                stats = self.limiter.get_window_stats(item, "airlock-api", *keys)
                return max(1.0, stats.reset_time - time.time())
        return None

    def check_user(self, subject: str) -> None:
        """Count a request of ``subject``; raise a 429 problem when over the limit."""
        wait = self._hit(self.per_user, "user", subject)
        if wait is not None:
            raise Problem(429, "too many requests for this user; retry later",
                          headers={"Retry-After": str(math.ceil(wait))})

    def check_ip(self, ip: str) -> float | None:
        """Count a request from ``ip``; return the wait when over the limit."""
        return self._hit(self.per_ip, "ip", ip)


def client_ip(scope: Scope, *, trust_proxy: bool) -> str:
    """Return the client address (the first ``X-Forwarded-For`` hop only behind a trusted proxy)."""
    if trust_proxy:
        for name, value in scope.get("headers") or []:
            if name == b"x-forwarded-for":
                first = value.decode("latin-1").split(",")[0].strip()
                if first:
                    return first
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def _problem(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"type": "about:blank", "title": "Request refused", "status": status,
                       "detail": detail, "message": detail}).encode()
    raw = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class IpRateLimit:
    """ASGI middleware: refuse a client IP over its limit with 429 and ``Retry-After``."""

    def __init__(self, app: ASGIApp, *, limits: RateLimits, trust_proxy: bool) -> None:
        self.app = app
        self.limits = limits
        self.trust_proxy = trust_proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count the request against its address, or answer 429."""
        if scope["type"] == "http" and not str(scope.get("path", "")).startswith(_EXEMPT):
            ip = client_ip(scope, trust_proxy=self.trust_proxy)
            if self.limits.backend == "redis":  # a network round trip: keep it off the event loop
                wait = await anyio.to_thread.run_sync(self.limits.check_ip, ip)
            else:
                wait = self.limits.check_ip(ip)
            if wait is not None:
                await _problem(send, 429, "too many requests from this address; retry later",
                               {"Retry-After": str(math.ceil(wait))})
                return
        await self.app(scope, receive, send)


class BodySizeLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` (declared or streamed) with 413."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, prefix: str = "/v1") -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on while its body stays within the limit, else answer 413."""
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers") or []:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _problem(send, 400, "Content-Length is not a number")
                    return
                if declared > self.max_bytes:
                    await _problem(send, 413, f"the request body is larger than {self.max_bytes} bytes")
                    return
        seen = 0
        started = refused = False
        too_large = f"the request body is larger than {self.max_bytes} bytes"

        async def limited() -> Message:
            # Past the limit the client gets its 413 at once and the app sees a disconnect (an
            # exception here would reach the body parser and come out as a 400).
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    refused = True
                    if not started:
                        await _problem(send, 413, too_large)
                    return {"type": "http.disconnect"}
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 was the answer
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, tracking)
        except Exception:
            if not refused:
                raise
