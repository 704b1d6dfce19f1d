"""Shared fixtures: stores on SQLite and PostgreSQL, each test in its own database space.

PostgreSQL tests use the server on 127.0.0.1:5432 (database ``test``, user ``postgres``).
CI must fail, not skip, when it is missing: set ENTITYFLOW_TEST_PG to another URL to
point elsewhere.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from eventstore.kafka import ApacheKafka

PG_BASE = os.environ.get("ENTITYFLOW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def pg_conninfo() -> str:
    return PG_BASE.replace("postgresql://", "postgresql://", 1)


def new_pg_schema() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def drop_pg_schema(schema: str) -> None:
    with psycopg.connect(pg_conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL store URL in a fresh schema, dropped afterwards."""
    schema = new_pg_schema()
    yield f"{PG_BASE}?schema={schema}"
    drop_pg_schema(schema)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test body against SQLite and PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    schema = new_pg_schema()
    yield f"{PG_BASE}?schema={schema}"
    drop_pg_schema(schema)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    """One Apache Kafka broker for the whole run; tests keep apart by topic namespace.

    A test that needs the broker down stops it and starts it again (its data is kept,
    unless the test wipes it on purpose); :func:`running_broker` checks that each test
    hands it back running.
    """
    with ApacheKafka(tmp_path_factory.mktemp("kafka")) as broker:
        yield broker


@pytest.fixture
def running_broker(kafka_broker: ApacheKafka) -> Iterator[ApacheKafka]:
    """The shared broker, for a test that stops or restarts it; started again if left down."""
    yield kafka_broker
    if not kafka_broker.running:
        kafka_broker.start()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: ApacheKafka) -> str:
    return kafka_broker.bootstrap_servers


@pytest.fixture
def namespace() -> str:
    """A fresh topic namespace, so tests sharing the broker never see each other's topics."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``pytest.mark.anyio``) run on asyncio."""
    return "asyncio"
