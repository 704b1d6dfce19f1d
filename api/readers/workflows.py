"""Reads workflow executions for the status routes: cached folds, fast-forwarded, waited on.

An execution's status is a fold of its history (:class:`~sagas.ExecutionRecord`), which
needs no workflow code. The reader keeps the folds of recently read executions and brings
one up to date by reading only the events after its version; the reads of concurrent
requests share one store query (the entity reader's :class:`~api.readers.entities.TailBatcher`).

``wait`` is the long poll behind ``GET /workflows/{type}/{id}?wait=S``. One watcher task
serves every waiting request: each tick (``interval``, 10 ms) it reads the new events of
all watched executions in one store query, folds them, and wakes only the requests whose
execution reached a status they wait for. However many requests wait, the store sees one
query per tick, and an answer leaves within about a tick of the commit that finished the
execution.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from api.readers.entities import TailBatcher
from eventstore import RecordedEvent
from sagas import ExecutionRecord, Workflow, WorkflowNotFoundError
from sagas.protocol import start_command_id

log = logging.getLogger("entityflow.api")
Accepted = Callable[[str], Awaitable[bool]]
"""Whether a start command id was accepted (queued) by an API node."""
AnyWorkflow = Workflow[Any, Any]


@dataclass
class _Watched:
    """One watched execution: its fold and the requests waiting on it."""

    record: ExecutionRecord
    waiters: list[tuple[Collection[str], asyncio.Future[None]]] = field(default_factory=list)


class WorkflowReader:
    """Execution statuses at their newest committed version, for one app."""

    def __init__(
        self,
        tails: TailBatcher,
        accepted: Accepted,
        *,
        capacity: int = 10_000,
        interval: float = 0.01,
    ) -> None:
        self.tails = tails
        self.accepted = accepted
        self.capacity = capacity
        self.interval = interval
        self._cache: OrderedDict[str, ExecutionRecord] = OrderedDict()
        self._watched: dict[str, _Watched] = {}
        self._watcher: asyncio.Task[None] | None = None
        self.polls = 0

    # -- reading ----------------------------------------------------------------------

    async def current(self, wf: AnyWorkflow, workflow_id: str) -> ExecutionRecord:
        """The execution's fold; ``record.started`` is False when it has no history yet."""
        address = wf.address(workflow_id)
        record = self._record(address, wf.name, workflow_id)
        _apply(record, await self.tails.after(address, record.version))
        self._keep(record)
        return record

    async def status(self, wf: AnyWorkflow, workflow_id: str) -> ExecutionRecord:
        """The execution's fold; :class:`WorkflowNotFoundError` if it has not started."""
        record = await self.current(wf, workflow_id)
        if not record.started:
            raise _not_started(record.address)
        return record

    def _record(self, address: str, workflow_type: str, workflow_id: str) -> ExecutionRecord:
        record = self._cache.get(address)
        if record is not None:
            self._cache.move_to_end(address)
            return record
        watched = self._watched.get(address)
        if watched is not None:
            return watched.record
        return ExecutionRecord(address, workflow_type, workflow_id)

    def _keep(self, record: ExecutionRecord) -> None:
        if record.started and record.address not in self._cache:
            self._cache[record.address] = record
            if len(self._cache) > self.capacity:
                self._cache.popitem(last=False)

    # -- waiting ----------------------------------------------------------------------

    async def wait(
        self, wf: AnyWorkflow, workflow_id: str, until: Collection[str], timeout: float
    ) -> ExecutionRecord:
        """The fold once its status is in ``until``, or as it is after ``timeout`` seconds.

        An execution whose start was accepted but not processed yet is waited for; one
        no API node ever accepted a start for is a :class:`WorkflowNotFoundError` at once.
        """
        record = await self.current(wf, workflow_id)
        if record.status in until:
            return record
        if not record.started and not await self.accepted(start_command_id(record.address)):
            raise _not_started(record.address)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        watched = self._watched.setdefault(record.address, _Watched(record))
        watched.waiters.append((until, waiter))
        self._start_watcher()
        try:
            # asyncio.wait, not wait_for: it never cancels what it waits on
            await asyncio.wait([waiter], timeout=timeout)
        finally:
            self._unwatch(record.address, waiter)
        record = watched.record
        if not record.started:
            raise _not_started(record.address)
        self._keep(record)
        return record

    def _unwatch(self, address: str, waiter: asyncio.Future[None]) -> None:
        watched = self._watched.get(address)
        if watched is None:
            return
        watched.waiters = [(u, w) for u, w in watched.waiters if w is not waiter]
        if not watched.waiters:
            del self._watched[address]

    def _start_watcher(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        """Poll every watched execution once per tick, while any request waits."""
        loop = asyncio.get_running_loop()
        store, executor = self.tails.store, self.tails.executor
        while self._watched:
            await asyncio.sleep(self.interval)
            after = {a: w.record.version for a, w in self._watched.items()}
            if not after:
                break
            self.polls += 1
            try:
                tails = await loop.run_in_executor(executor, store.read_tails, after)
            except Exception as exc:  # the waiters time out with the status they have
                log.warning("could not poll %d workflow executions: %s", len(after), exc)
                continue
            self._wake(tails)

    def _wake(self, tails: dict[str, list[RecordedEvent]]) -> None:
        for address, watched in self._watched.items():
            _apply(watched.record, tails.get(address, []))
            status = watched.record.status
            for until, waiter in watched.waiters:
                if status in until and not waiter.done():
                    waiter.set_result(None)


def _apply(record: ExecutionRecord, events: list[RecordedEvent]) -> None:
    for recorded in events:
        if recorded.version == record.version + 1:  # another read may have applied it
            record.apply(recorded.event, recorded.timestamp)


def _not_started(address: str) -> WorkflowNotFoundError:
    return WorkflowNotFoundError(
        f"{address} has not started (or its start message is not processed yet)"
    )
