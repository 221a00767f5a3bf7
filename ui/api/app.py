"""Build the FastAPI app of ``airlock serve`` over one :class:`~graph.service.AirlockApp`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from graph.service import AirlockApp
from ui.api import health, routes_staff, routes_threads
from ui.api.deps import ApiState
from ui.api.problems import install_problem_handlers
from ui.api.runs import Runner, RunStore
from ui.api.settings import ServeSettings
from ui.api.throttle import BodySizeLimit, IpRateLimit, RateLimits
from ui.api.tokens import TokenVerifier
from ui.api.wakeups import Wakeups

__all__ = ["create_api"]

DESCRIPTION = """The airlock chat service: guarded turns over HTTP.

Every request but the probes needs `Authorization: Bearer <JWT>` (issuer and audience checked;
roles from the roles claim: `customer`, `reviewer`, `auditor`). Errors are
`application/problem+json` with `detail` and `message`. A turn streams Server-Sent Events
(`run`, `guard`, `tool`, `gate`, `review`, `notice`, `answer`, `error`, `done`); only text that
passed the output guard is sent. Re-post with the same `Idempotency-Key` to reattach to a run,
or read `/v1/runs/{run_id}/events` with `Last-Event-ID`.
"""


def create_api(*, app: AirlockApp, settings: ServeSettings) -> FastAPI:
    """Return the FastAPI app: routes, problem+json errors, limits, CORS.

    Args:
        app: The application service (its services are started).
        settings: The API's settings.

    Returns:
        The ASGI app; its lifespan stops the run workers.
    """
    runs = RunStore(app.services.pool)
    wakeups = Wakeups()
    state = ApiState(app=app, settings=settings, verifier=TokenVerifier(settings), limits=RateLimits(settings),
                     runs=runs, wakeups=wakeups,
                     runner=Runner(app=app, store=runs, workers=settings.run_workers, notify=wakeups.notify))

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        wakeups.bind(asyncio.get_running_loop())
        try:
            yield
        finally:
            state.runner.close()

    api = FastAPI(title="airlock", version="1", description=DESCRIPTION, lifespan=lifespan)
    api.state.airlock = state
    install_problem_handlers(api)
    api.include_router(health.router)
    api.include_router(routes_threads.router)
    api.include_router(routes_staff.router)
    # Outermost last: size and IP limits run before anything parses the request.
    if settings.cors_origins:
        api.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_credentials=False,
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type",
                                                                         "Idempotency-Key", "Last-Event-ID"],
                           expose_headers=["X-Run-Id", "Retry-After"])
    api.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    api.add_middleware(IpRateLimit, limits=state.limits, trust_proxy=settings.trust_proxy)
    return api
