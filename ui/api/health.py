"""Probes and metrics: ``/healthz`` (alive), ``/readyz`` (database, migrations, models), ``/metrics``."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from graph.db import applied_migrations, available_migrations
from ui.api.deps import State

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Answer while the process serves requests."""
    return {"status": "ok"}


def _ready(state: Any) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    services = state.app.services
    try:
        with services.pool.connection(timeout=2) as conn:
            conn.execute("SELECT 1")
        checks["database"] = "ok"
        missing = sorted({m.version for m in available_migrations()} - set(applied_migrations(services.pool)))
        checks["migrations"] = "ok" if not missing else f"pending: {missing}"
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
        checks["migrations"] = "unknown"
    checks["models"] = "ok" if "input" in services.warm else "not loaded"
    return checks


@router.get("/readyz", responses={503: {"description": "not ready (the body says what)"}})
async def readyz(state: State) -> JSONResponse:
    """Report whether the database answers, every migration is applied and the guard models are loaded."""
    checks = await anyio.to_thread.run_sync(_ready, state)
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response)
async def metrics() -> Response:
    """Expose the OpenTelemetry metrics in the Prometheus text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
