"""Entry points for LangGraph Studio / ``langgraph dev`` (see ``langgraph.json``).

The server refuses a graph compiled with its own checkpointer, so ``graph`` is compiled
without one; ``checkpointer`` is the factory the server calls to persist threads in the
same Postgres as the app (``DATABASE_URL``, else the embedded server).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg_pool import AsyncConnectionPool

from graph.builder import build_graph
from graph.db import connect_kwargs, resolve_database_url
from graph.runtime import AirlockServices, AirlockSettings, checkpoint_serde

__all__ = ["checkpointer", "graph", "make_graph"]


@lru_cache(maxsize=1)
def _services() -> AirlockServices:
    return AirlockServices.start(AirlockSettings.from_env())


def make_graph() -> Any:
    """Build the graph for the server, without a checkpointer."""
    return build_graph(services=_services(), name="airlock")


graph = make_graph()


@asynccontextmanager
async def checkpointer() -> AsyncIterator[AsyncPostgresSaver]:
    """Yield an async Postgres checkpointer on its own pool (tables created once)."""
    settings = AirlockSettings.from_env()
    url = resolve_database_url(settings.database_url, data_dir=settings.data_dir)
    async with AsyncConnectionPool(url, max_size=10, kwargs=connect_kwargs(), open=False) as pool:
        saver = AsyncPostgresSaver(pool, serde=checkpoint_serde(settings.data_dir))  # type: ignore[arg-type]
        await saver.setup()
        yield saver
