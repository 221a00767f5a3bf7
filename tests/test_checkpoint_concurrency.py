"""Checkpoint I/O of one process runs in several threads at once (issue 13).

LangGraph's ``PostgresSaver`` holds one lock around every cursor, even on a pool, and the app
shares one saver: every turn of a process waited for every other turn's checkpoint reads and
writes. These tests prove the overlap with synchronisation, not timings: the first checkouts of
the checkpointer's pool wait at a barrier, which only opens when two callers are inside
checkpoint I/O at the same time (with the lock, the second never gets there and the barrier's
deadline turns the hang into a failure).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg.sql
import pytest
from langgraph.checkpoint.postgres import PostgresSaver
from psycopg_pool import ConnectionPool

from graph.checkpoint_privacy import CheckpointScrubber, PrivatePostgresSaver
from graph.db import connect_kwargs, open_pool
from graph.runtime import AirlockServices, AirlockSettings
from graph.service import AirlockApp
from tests.helpers import USER, make_services

pytestmark = [pytest.mark.postgres]

DEADLINE_S = 60.0  # only turns a hang (a serialised saver) into a failure


@contextmanager
def meeting(pool: ConnectionPool, parties: int = 2) -> Iterator[dict[str, Any]]:
    """Make the pool's first ``parties`` checkouts wait for each other while holding their connection."""
    barrier = threading.Barrier(parties, timeout=DEADLINE_S)
    seen: dict[str, Any] = {"met": 0, "broken": 0}
    guard = threading.Lock()
    original = pool.connection

    @contextmanager
    def connection(timeout: float | None = None) -> Iterator[Any]:
        with original(timeout) as conn:
            with guard:
                waiting = seen["met"] + seen["broken"] < parties
                if waiting:
                    seen["met"] += 1
            if waiting:
                try:
                    barrier.wait()
                except threading.BrokenBarrierError:
                    with guard:
                        seen["met"] -= 1
                        seen["broken"] += 1
            yield conn

    pool.connection = connection  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        pool.connection = original  # type: ignore[method-assign]


def _config(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}


def test_two_threads_read_checkpoints_through_one_saver_at_once(database_url: str) -> None:
    pool = open_pool(database_url, max_size=4)
    try:
        PostgresSaver(pool).setup()  # type: ignore[arg-type]
        saver = PrivatePostgresSaver(pool, scrubber=CheckpointScrubber(mask=None))
        assert saver.concurrent
        with meeting(pool) as seen, ThreadPoolExecutor(max_workers=2) as run:
            found = list(run.map(lambda t: saver.get_tuple(_config(t)), ["a", "b"]))  # type: ignore[arg-type]
        assert found == [None, None]
        assert seen == {"met": 2, "broken": 0}, "the second reader waited for the first"
    finally:
        pool.close()


def test_the_base_saver_holds_one_lock_over_all_io_and_a_single_connection_keeps_it(database_url: str) -> None:
    """The control: what the barrier test would meet without the fix, and where the lock must stay."""
    pool = open_pool(database_url, max_size=4)
    try:
        PostgresSaver(pool).setup()  # type: ignore[arg-type]
        base = PostgresSaver(pool)  # type: ignore[arg-type]
        held: list[bool] = []
        original = pool.connection

        @contextmanager
        def connection(timeout: float | None = None) -> Iterator[Any]:
            with original(timeout) as conn:
                held.append(base.lock.locked())  # inside checkpoint I/O: is the process-wide lock held?
                yield conn

        pool.connection = connection  # type: ignore[method-assign]
        try:
            assert base.get_tuple(_config("a")) is None  # type: ignore[arg-type]
        finally:
            pool.connection = original  # type: ignore[method-assign]
        assert held == [True], "LangGraph's saver no longer locks a pool: the override may be dropped"
    finally:
        pool.close()
    # One connection serves one caller at a time: there the lock stays.
    with psycopg.connect(database_url, **connect_kwargs()) as conn:
        single = PrivatePostgresSaver(conn)
        assert not single.concurrent
        assert single.get_tuple(_config("a")) is None  # type: ignore[arg-type]


def test_concurrent_writes_keep_every_checkpoint_and_its_masking(database_url: str) -> None:
    """Puts of many threads at once: each thread's checkpoint is stored whole, customer text masked."""
    from langchain_core.messages import HumanMessage
    from langgraph.checkpoint.base import empty_checkpoint

    pool = open_pool(database_url, max_size=8)
    try:
        PostgresSaver(pool).setup()  # type: ignore[arg-type]
        scrubber = CheckpointScrubber(mask=lambda thread, text: text.replace("4111111111111111", "<CARD_1>"))
        saver = PrivatePostgresSaver(pool, scrubber=scrubber)

        def put(i: int) -> None:
            checkpoint = empty_checkpoint()
            checkpoint["channel_values"] = {"messages": [HumanMessage(f"card 4111111111111111 thread {i}")]}
            checkpoint["channel_versions"] = {"messages": 1}
            saver.put(_config(f"t{i}"), checkpoint, {"source": "input", "step": -1}, {"messages": 1})  # type: ignore[arg-type]

        with meeting(pool) as seen, ThreadPoolExecutor(max_workers=8) as run:
            list(run.map(put, range(16)))
        assert seen["met"] == 2 and seen["broken"] == 0
        for i in range(16):
            stored = saver.get_tuple(_config(f"t{i}"))  # type: ignore[arg-type]
            assert stored is not None
            [message] = stored.checkpoint["channel_values"]["messages"]
            assert message.content == f"card <CARD_1> thread {i}"
    finally:
        pool.close()


def test_the_app_checkpointer_has_its_own_pool_and_turns_overlap(database_url: str) -> None:
    services = make_services(database_url)
    try:
        saver = services.checkpointer()
        assert isinstance(saver, PrivatePostgresSaver) and saver.concurrent
        assert saver.conn is not services.pool
        assert isinstance(saver.conn, ConnectionPool) and saver.conn.max_size == services.settings.checkpoint_pool_size
        app = AirlockApp(services=services)
        threads = [app.new_thread(user_id=USER) for _ in range(2)]
        with meeting(saver.conn) as seen, ThreadPoolExecutor(max_workers=2) as run:
            results = list(run.map(
                lambda t: app.send(thread_id=t, user_id=USER, text="What is the baggage allowance?"), threads))
        assert seen["met"] == 2 and seen["broken"] == 0
        assert all(r.reply and not r.pending for r in results), [r.notice for r in results]
        for thread in threads:
            assert [m.type for m in app.messages(thread)][:1] == ["human"]
    finally:
        services.close()
    assert saver.conn.closed


@pytest.mark.parametrize("value", ["0", "-3", "1001", "ten"])
def test_checkpoint_pool_size_is_validated(value: str) -> None:
    with pytest.raises(ValueError, match="AIRLOCK_CHECKPOINT_POOL_SIZE"):
        AirlockSettings.from_env({"AIRLOCK_CHECKPOINT_POOL_SIZE": value})


def test_pool_sizes_come_from_the_environment() -> None:
    settings = AirlockSettings.from_env({"AIRLOCK_CHECKPOINT_POOL_SIZE": "32", "AIRLOCK_POOL_MAX_SIZE": "40"})
    assert settings.checkpoint_pool_size == 32 and settings.pool_max_size == 40
    assert AirlockSettings.from_env({}).checkpoint_pool_size == 4
    with pytest.raises(ValueError, match="AIRLOCK_POOL_MAX_SIZE"):
        AirlockSettings.from_env({"AIRLOCK_POOL_MAX_SIZE": "0"})


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_pool_timeout_is_validated(value: str) -> None:
    with pytest.raises(ValueError, match="AIRLOCK_POOL_TIMEOUT"):
        AirlockSettings.from_env({"AIRLOCK_POOL_TIMEOUT": value})


def test_both_pools_queue_callers_for_the_configured_time(database_url: str) -> None:
    assert AirlockSettings.from_env({}).pool_timeout == 120
    settings = AirlockSettings.from_env({"AIRLOCK_POOL_TIMEOUT": "7.5"}, database_url=database_url,
                                        model_provider="offline")
    services = AirlockServices.start(settings)
    try:
        services.checkpointer()
        assert services.pool.timeout == 7.5
        assert services._checkpoint_pool is not None and services._checkpoint_pool.timeout == 7.5
        assert services._vault_pool is not None and services._vault_pool.timeout == 7.5
    finally:
        services.close()


def test_processes_starting_together_on_a_new_database_all_create_the_checkpoint_tables(server_url: str) -> None:
    """Several starts at once on a database without checkpoint tables all succeed (CI saw a deadlock).

    LangGraph's setup builds its indexes CONCURRENTLY; two setups at once can deadlock (one
    waits for the other's table lock while the other waits for its snapshot) or meet each
    other's rows. Every start must still come up, with the tables made once.
    """
    from graph.runtime import _checkpoint_version, _make_checkpoint_tables
    from tests.conftest import _admin, _with_db

    starts = 4
    for round_ in range(3):
        name = f"airlock_ckpt_setup_{uuid.uuid4().hex[:8]}"
        with _admin(server_url) as conn:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
        pools = [open_pool(_with_db(server_url, name), max_size=2) for _ in range(starts)]
        try:
            barrier = threading.Barrier(starts, timeout=DEADLINE_S)

            def start(pool: ConnectionPool, barrier: threading.Barrier = barrier) -> int:
                barrier.wait()
                _make_checkpoint_tables(pool)
                return _checkpoint_version(pool)

            with ThreadPoolExecutor(max_workers=starts) as workers:
                versions = list(workers.map(start, pools))
            assert versions == [len(PostgresSaver.MIGRATIONS) - 1] * starts, (round_, versions)
            with pools[0].connection() as conn:
                invalid = conn.execute(
                    "SELECT count(*) AS n FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
                    " WHERE c.relname LIKE 'checkpoint%%' AND NOT i.indisvalid").fetchone()
            assert invalid is not None and invalid["n"] == 0, round_
        finally:
            for pool in pools:
                pool.close()
            with _admin(server_url) as conn:
                conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    psycopg.sql.Identifier(name)))
