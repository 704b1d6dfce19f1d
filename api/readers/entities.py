"""Reads entities for state and query routes: a cache fast-forwarded from the store.

The first read of an entity loads it from its newest snapshot plus the events after it;
later reads fetch only the events after the cached version (usually none) and apply
them. Events are immutable once committed, so the cache can never be stale by more than
that one read, and a read that follows an acknowledged update sees it (the worker
commits before it replies).

Store calls run in a thread pool; the cached entities are only ever touched on the
event loop's thread, between awaits, so no lock is needed and a query sees a state that
no one changes under it. The tail reads of concurrent requests are batched: whatever
arrives while a read is in flight goes into the next one (a single query for many
entities), so a read still starts after its request arrived.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from actors import Entity, EntitySpec, check_entity_id, load_entity
from eventstore import RecordedEvent, Store

T = TypeVar("T")


class TailBatcher:
    """Brings cached entities up to date with one store query for many of them."""

    def __init__(self, store: Store, executor: Executor, *, in_flight: int = 2) -> None:
        self.store = store
        self.executor = executor
        self.max_in_flight = in_flight
        self._pending: dict[str, tuple[int, list[asyncio.Future[list[RecordedEvent]]]]] = {}
        self._in_flight: set[asyncio.Task[None]] = set()
        self.queries = 0

    async def after(self, address: str, version: int) -> list[RecordedEvent]:
        """The events of ``address`` after ``version``, read after this call began."""
        waiter: asyncio.Future[list[RecordedEvent]] = asyncio.get_running_loop().create_future()
        entry = self._pending.get(address)
        if entry is None:
            self._pending[address] = (version, [waiter])
        else:
            entry[1].append(waiter)
            self._pending[address] = (min(entry[0], version), entry[1])
        self._kick()
        events = await waiter
        return [e for e in events if e.version > version]

    def _kick(self) -> None:
        if len(self._in_flight) >= self.max_in_flight or not self._pending:
            return
        batch, self._pending = self._pending, {}
        task = asyncio.ensure_future(self._read(batch))
        self._in_flight.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._kick()

    async def _read(
        self, batch: dict[str, tuple[int, list[asyncio.Future[list[RecordedEvent]]]]]
    ) -> None:
        self.queries += 1
        after = {address: version for address, (version, _) in batch.items()}
        loop = asyncio.get_running_loop()
        try:
            tails = await loop.run_in_executor(self.executor, self.store.read_tails, after)
        except Exception as exc:
            for _, waiters in batch.values():
                for w in waiters:
                    if not w.done():
                        w.set_exception(exc)
            return
        for address, (_, waiters) in batch.items():
            for w in waiters:
                if not w.done():
                    w.set_result(tails.get(address, []))


class EntityReader:
    """Entity state at the newest or at a given version, for one app."""

    def __init__(self, store: Store, executor: Executor, *, capacity: int = 10_000) -> None:
        self.store = store
        self.executor = executor
        self.capacity = capacity
        self._cache: OrderedDict[str, Entity[Any]] = OrderedDict()
        self.tails = TailBatcher(store, executor)
        self.loads = 0

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def _load(self, spec: EntitySpec, entity_id: str, version: int | None) -> Entity[Any]:
        return load_entity(self.store, spec, entity_id, version)

    async def current(self, spec: EntitySpec, entity_id: str) -> Entity[Any]:
        """The entity at its newest committed version."""
        address = f"{spec.type_name}/{check_entity_id(entity_id)}"
        cached = self._cache.get(address)
        if cached is None:
            self.loads += 1
            loaded = await self.run(self._load, spec, entity_id, None)
            cached = self._cache.get(address)  # another request may have loaded it meanwhile
            if cached is None or cached.version < loaded.version:
                cached = loaded
                self._cache[address] = loaded
                if len(self._cache) > self.capacity:
                    self._cache.popitem(last=False)
            return cached
        self._cache.move_to_end(address)
        tail = await self.tails.after(address, cached.version)
        for recorded in tail:
            if recorded.version == cached.version + 1:
                spec.apply(cached, recorded.event)
        return cached

    async def at(self, spec: EntitySpec, entity_id: str, version: int) -> Entity[Any]:
        """The entity as it was right after ``version`` (time travel); never cached."""
        address = f"{spec.type_name}/{check_entity_id(entity_id)}"
        cached = self._cache.get(address)
        if cached is not None and cached.version == version:
            return cached
        return await self.run(self._load, spec, entity_id, version)

    async def read(self, spec: EntitySpec, entity_id: str, version: int | None) -> Entity[Any]:
        if version is None:
            return await self.current(spec, entity_id)
        return await self.at(spec, entity_id, version)
