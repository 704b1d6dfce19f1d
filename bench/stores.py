"""Throwaway stores for one measurement: a SQLite file in a temp dir, or a fresh PostgreSQL
schema that is dropped afterwards."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def store_url(kind: str, pg_base: str = DEFAULT_PG) -> Iterator[str]:
    """A store URL nobody else uses, removed when the block ends."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="entityflow-bench-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.db'}"
        return
    if kind != "postgres":
        raise ValueError(f"unknown store kind {kind!r}; use sqlite or postgres")
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{pg_base}?schema={schema}"
    finally:
        with psycopg.connect(pg_base, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def postgres_reachable(pg_base: str = DEFAULT_PG) -> str | None:
    """None when PostgreSQL answers, otherwise why not."""
    try:
        with psycopg.connect(pg_base, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip()
    return None
