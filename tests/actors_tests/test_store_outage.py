"""PostgreSQL connections cut mid-run: the worker recovers, nothing is lost or doubled.

The store does not ping a connection before each use (that would cost a round trip per
transaction); a connection the server dropped fails its statement, is discarded, and the
batch is retried. This test cuts every connection of this process and keeps going.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest

from actors import Host, InMemoryMailbox
from examples.shop import ENTITIES, Account
from tests.conftest import PG_BASE

pytestmark = pytest.mark.anyio


@pytest.fixture
def app_name(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"ef-outage-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PGAPPNAME", name)  # libpq labels this process's connections
    yield name


def _cut_connections(app_name: str) -> int:
    with psycopg.connect(PG_BASE, autocommit=True, application_name="ef-admin") as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (app_name,),
        ).fetchall()
    return len(rows)


@pytest.mark.postgres
async def test_the_worker_survives_its_connections_being_cut(pg_url: str, app_name: str) -> None:
    assert os.environ["PGAPPNAME"] == app_name
    async with Host(pg_url, ENTITIES, mailbox=InMemoryMailbox(partitions=2)) as host:
        client = host.client
        await client.update(Account.open, "a", owner="x")
        for _ in range(5):
            await client.update(Account.deposit, "a", amount=1)
        assert _cut_connections(app_name) >= 1
        for _ in range(5):
            await client.update(Account.deposit.options(timeout=30), "a", amount=1)
        ids = [client.signal(Account.deposit, "a", amount=1) for _ in range(20)]
        assert _cut_connections(app_name) >= 1
        last = await client.update(Account.deposit.options(timeout=30), "a", amount=1)
        assert all(client.outcome(i) is not None for i in ids)
        assert last.version == 1 + 5 + 5 + 20 + 1
        assert client.state(Account, "a").state.balance == Decimal(31)
        # One sweep replaced the dead pooled connections: a few failed batches, not one
        # per connection in the pool with a doubling pause between them.
        assert host.worker.stats.store_failures <= 4


async def test_a_commit_whose_answer_was_lost_still_answers_its_caller(store_url: str) -> None:
    """The server applied the batch, the connection broke before it said so."""
    from eventstore import Commit, StoreUnavailableError

    async with Host(store_url, ENTITIES, mailbox=InMemoryMailbox(partitions=1)) as host:
        client = host.client
        await client.update(Account.open, "b", owner="x")
        store = host.store
        real_commit = store.commit
        lost: list[Commit] = []

        def commit_then_lose_the_answer(commit: Commit) -> list[int]:
            ids = real_commit(commit)
            if not lost and commit.outcomes:
                lost.append(commit)
                raise StoreUnavailableError("committing a batch: connection lost")
            return ids

        store.commit = commit_then_lose_the_answer  # type: ignore[method-assign]
        result = await client.update(Account.deposit.options(timeout=15), "b", amount=7)
        assert (result.result, result.version) == (Decimal("7"), 2)
        assert lost, "the failure was injected"
        assert host.worker.stats.conflicts == 1  # the retry found its own commit
        assert client.state(Account, "b").state.balance == Decimal(7)  # applied once
