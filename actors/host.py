"""Assemble a store, a mailbox, a runtime and a worker thread into one running host.

``Host`` is what the quick start, the tests and ``entityflow worker`` share: give it the
entity classes (and any other actor kinds, such as workflows), and it runs a worker loop
in a background thread and hands out a :class:`~actors.client.Client`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, Self

from actors.client import Client, EntityCatalog
from actors.entity import Entity
from actors.kinds import ActorKind, EntityKind
from actors.mailbox.memory import InMemoryMailbox
from actors.mailbox.protocol import Mailbox
from actors.metrics import WorkerMetrics
from actors.runtime import Clock, Runtime, merge_registries, system_clock
from actors.worker import Worker
from eventstore import Store

log = logging.getLogger("entityflow.host")


class Host:
    """A running entityflow node: worker thread plus client, over one store and mailbox."""

    def __init__(
        self,
        store: Store | str,
        entities: Sequence[type[Entity[Any]]],
        *,
        kinds: Sequence[ActorKind] = (),
        mailbox: Mailbox | None = None,
        snapshot_every: int | None = 100,
        cache_size: int = 10_000,
        idle_passivation: float | None = 600.0,
        max_batch: int = 500,
        local_delivery: bool = True,
        tick_interval: float = 1.0,
        group: str = "entityflow-workers",
        instance_id: str | None = None,
        clock: Clock = system_clock,
        run_worker: bool = True,
    ) -> None:
        self.catalog = EntityCatalog(entities)
        self.kinds: list[ActorKind] = [
            EntityKind(spec, snapshot_every) for spec in self.catalog
        ] + list(kinds)
        registry = merge_registries(self.kinds)
        self._owns_store = isinstance(store, str)
        self.store = Store(store, registry) if isinstance(store, str) else store
        if not isinstance(store, str):
            self.store.registry.merge(registry)
        self._owns_mailbox = mailbox is None
        self.mailbox: Mailbox = mailbox if mailbox is not None else InMemoryMailbox()
        self.metrics = WorkerMetrics()
        self.runtime = Runtime(
            self.store,
            self.kinds,
            cache_size=cache_size,
            idle_passivation=idle_passivation,
            clock=clock,
            on_handled=self.metrics.handled,
        )
        self.worker = Worker(
            self.runtime,
            self.mailbox,
            group=group,
            max_batch=max_batch,
            local_delivery=local_delivery,
            tick_interval=tick_interval,
            instance_id=instance_id,
            metrics=self.metrics,
        )
        self.client = Client(self.mailbox, self.store, self.catalog)
        self._run_worker = run_worker
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self) -> Host:
        if self._run_worker and self._thread is None:
            self.worker.start()
            self._thread = threading.Thread(
                target=self._loop, name="entityflow-worker", daemon=True
            )
            self._thread.start()
        return self

    def _loop(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:
            self._error = exc
            log.exception("worker loop stopped")

    def stop(self) -> None:
        self.worker.stop()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.client.close()
        if self._owns_mailbox:
            self.mailbox.close()
        if self._owns_store:
            self.store.close()
        if self._error is not None:
            raise RuntimeError("the worker loop failed") from self._error

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
