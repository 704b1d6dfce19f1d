"""Running API stacks for the HTTP tests: uvicorn on a free port, a worker, a store.

``stack`` (one per test module) runs every test twice: against the real broker and
PostgreSQL (what production runs) and against the in-memory mailbox and SQLite (what a
developer runs). ``make_stack`` builds a private one with custom settings or no worker.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from actors import InMemoryMailbox, Mailbox
from actors.mailbox.kafka import KafkaMailbox
from api.app import AppParts, create_app
from api.server import ServerThread
from api.settings import Settings
from eventstore.kafka.io import KafkaSettings
from sagas import Host
from tests.api_tests.support import API_DOMAIN
from tests.conftest import PG_BASE, drop_pg_schema, new_pg_schema


@dataclass
class Stack:
    kind: str
    host: Host
    app: Any
    server: ServerThread
    http: httpx.Client

    @property
    def url(self) -> str:
        return self.server.url

    def new_id(self, prefix: str = "e") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    def wait_outcome(self, command_id: str, timeout: float = 20.0) -> dict[str, Any]:
        """Poll GET /commands/{id} until it is no longer pending."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.http.get(f"/commands/{command_id}")
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            if body["status"] != "pending":
                return body
            assert time.monotonic() < deadline, f"{command_id} still pending"
            time.sleep(0.02)


def _wait_for_partitions(host: Host, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not host.worker.owned:
        assert time.monotonic() < deadline, "the worker got no partitions"
        time.sleep(0.05)


@contextlib.contextmanager
def running_stack(
    kind: str,
    store_url: str,
    mailbox: Mailbox,
    settings: Settings,
    *,
    run_worker: bool = True,
) -> Iterator[Stack]:
    # A group of its own: stacks share the broker, and a group spanning them would rebalance
    # every stack whenever another one starts or stops.
    group = f"workers-{uuid.uuid4().hex[:10]}"
    host = API_DOMAIN.host(
        store_url,
        mailbox=mailbox,
        run_worker=run_worker,
        group=group,
    )
    host.start()
    try:
        if run_worker and kind.startswith("kafka"):
            _wait_for_partitions(host)
        app = create_app(AppParts.from_host(host, settings))
        with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=60) as http:
            yield Stack(kind, host, app, server, http)
    finally:
        host.stop()
        mailbox.close()


StackFactory = Callable[..., contextlib.AbstractContextManager[Stack]]


@pytest.fixture(scope="module")
def module_pg_url() -> Iterator[str]:
    schema = new_pg_schema()
    yield f"{PG_BASE}?schema={schema}"
    drop_pg_schema(schema)


def _kafka_mailbox(bootstrap: str) -> KafkaMailbox:
    return KafkaMailbox(
        KafkaSettings(bootstrap_servers=bootstrap),
        namespace=f"t{uuid.uuid4().hex[:10]}",
        partitions=4,
    )


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("kafka-postgres", marks=[pytest.mark.kafka, pytest.mark.postgres]),
        "memory-sqlite",
    ],
)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    settings = Settings(update_timeout=20)
    if request.param == "memory-sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('api') / 'store.db'}"
        with running_stack(request.param, url, InMemoryMailbox(partitions=4), settings) as s:
            yield s
        return
    pg_url = request.getfixturevalue("module_pg_url")
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    with running_stack(request.param, pg_url, _kafka_mailbox(bootstrap), settings) as s:
        yield s


@pytest.fixture
def make_stack(tmp_path: Path, request: pytest.FixtureRequest) -> StackFactory:
    """Build a private stack: ``with make_stack(kind, run_worker=False, **settings) as s``."""

    @contextlib.contextmanager
    def make(
        kind: str = "memory-sqlite", *, run_worker: bool = True, **options: Any
    ) -> Iterator[Stack]:
        settings = Settings(**{"update_timeout": 20, **options})
        if kind == "memory-sqlite":
            url = f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}"
            with running_stack(
                kind, url, InMemoryMailbox(partitions=4), settings, run_worker=run_worker
            ) as s:
                yield s
            return
        schema = new_pg_schema()
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        try:
            with running_stack(
                kind,
                f"{PG_BASE}?schema={schema}",
                _kafka_mailbox(bootstrap),
                settings,
                run_worker=run_worker,
            ) as s:
                yield s
        finally:
            drop_pg_schema(schema)

    return make
