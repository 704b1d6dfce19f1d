"""Several processes opening one fresh PostgreSQL schema at once all succeed."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from tests.conftest import PG_BASE, drop_pg_schema, new_pg_schema

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
