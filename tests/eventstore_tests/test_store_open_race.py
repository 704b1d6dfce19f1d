"""Several processes opening one fresh PostgreSQL schema at once all succeed."""

from __future__ import annotations

import multiprocessing as mp
import threading

import psycopg
import pytest
from psycopg import sql

from tests.conftest import PG_BASE, drop_pg_schema, new_pg_schema, pg_conninfo

pytestmark = pytest.mark.postgres


def _open(url: str, results: mp.Queue[str]) -> None:
    from eventstore import EventRegistry, Store

    try:
        Store(url, EventRegistry()).close()
        results.put("ok")
    except Exception as exc:  # reported to the parent, which asserts on it
        results.put(repr(exc))


@pytest.mark.parametrize("round_", range(2))
def test_concurrent_first_opens_take_turns(round_: int) -> None:
    schema = new_pg_schema()
    url = f"{PG_BASE}?schema={schema}"
    ctx = mp.get_context("spawn")
    results: mp.Queue[str] = ctx.Queue()
    procs = [ctx.Process(target=_open, args=(url, results)) for _ in range(5)]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        outcomes = [results.get(timeout=5) for _ in procs]
    finally:
        drop_pg_schema(schema)
    assert outcomes == ["ok"] * len(procs)


def test_opening_a_complete_schema_does_not_wait_for_running_commits(pg_url: str) -> None:
    """A worker joining a running system opens the store while others commit.

    A commit holds the events table in EXCLUSIVE mode and then writes outcomes; an
    opener that re-ran ``CREATE INDEX IF NOT EXISTS`` (which locks first and looks
    after) waited on it, and with ``ALTER TABLE`` on the outcomes table the two
    deadlocked (seen in CI as a worker that could not start).
    """
    from eventstore import EventRegistry, Store

    Store(pg_url, EventRegistry()).close()  # the schema now exists and is complete
    schema = pg_url.split("schema=")[1]
    with psycopg.connect(pg_conninfo()) as committer:
        tables = committer.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        ).fetchall()
        for (name,) in tables:
            committer.execute(
                sql.SQL("LOCK TABLE {}.{} IN EXCLUSIVE MODE").format(
                    sql.Identifier(schema), sql.Identifier(name)
                )
            )
        opened: list[str] = []
        opener = threading.Thread(
            target=lambda: opened.append(repr(Store(pg_url, EventRegistry()).close())),
            daemon=True,
        )
        opener.start()
        opener.join(10)
        committer.rollback()
    assert len(tables) >= 4
    assert opened == ["None"], "opening the store waited for the lock a commit holds"
