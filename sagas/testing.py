"""A test kit: run a domain's workflows in-process on a virtual clock that skips time.

``WorkflowEnvironment`` is a whole node in the test's own thread: a store (SQLite in a
temporary directory unless given), the in-memory mailbox, and a worker that the
environment steps itself instead of a background thread. Its clock moves only when the
test says so, or when every execution is waiting on a timer: then it jumps to the next
due timer (time skipping), so a workflow that sleeps thirty days runs in milliseconds::

    async with WorkflowEnvironment(Domain(ENTITIES, WORKFLOWS)) as env:
        wid = await env.start(refund, RefundInput(...))
        await env.sleep(timedelta(hours=25))          # fires what is due on the way
        await env.signal(decision, wid, Decision(...))
        status = await env.result(refund, wid)        # skips to each timer until it ends

Everything runs through the same runtime, timers and history as production; only the
broker (in memory) and the clock differ. Activities run on their worker's threads in
real time; the clock never skips while one is running.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from actors.timers import MAX_DELAY
from eventstore import Outcome, RecordedEvent
from sagas.definition import Workflow
from sagas.domain import Domain, Host
from sagas.errors import WorkflowError
from sagas.signals import Signal
from sagas.status import FINAL_STATUSES, ExecutionStatus

T = TypeVar("T")
DEFAULT_START = datetime(2030, 1, 1, tzinfo=UTC)


class VirtualClock:
    """A clock that moves only when told: ``clock()`` is the time, ``advance`` moves it."""

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        if start.tzinfo is None:
            raise ValueError("the virtual clock starts at an aware datetime (tzinfo=UTC)")
        self._now = start

    def __call__(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        if delta < timedelta(0):
            raise ValueError(f"time does not go backwards (advance by {delta})")
        self._now += delta

    def set(self, at: datetime) -> None:
        """Move to ``at`` (never backwards)."""
        self._now = max(self._now, at)


class WorkflowEnvironment:
    """An in-process node of a domain on a virtual clock, stepped by the test itself."""

    def __init__(
        self, domain: Domain, *, store: str | None = None, start: datetime = DEFAULT_START
    ) -> None:
        self.clock = VirtualClock(start)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if store is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="entityflow-test-")
            store = f"sqlite:///{self._tmp.name}/environment.db"
        self.host = Host(domain, store, clock=self.clock, run_worker=False, tick_interval=0.0)
        self.host.worker.poll_timeout = 0.0
        self.client = self.host.client
        """The entity client (``await env.client.update(Account.deposit, ...)`` works too
        through :meth:`call`, which steps the worker while it waits)."""
        self.workflows = self.host.workflows

    # -- life cycle ------------------------------------------------------------------------

    async def __aenter__(self) -> WorkflowEnvironment:
        self.host.start()
        self.host.worker.start()
        await self.run_until_idle()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.host.worker.close()
        self.host.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def now(self) -> datetime:
        return self.clock()

    # -- driving ---------------------------------------------------------------------------

    async def call(self, awaitable: Awaitable[T]) -> T:
        """Await something that needs the worker (an update, a signal) while stepping it."""
        task = asyncio.ensure_future(awaitable)
        while not task.done():
            if self.host.worker.step() == 0:
                await asyncio.sleep(0.001)
        return task.result()

    async def run_until_idle(self) -> None:
        """Step the worker until nothing is left to do at the current time."""
        quiet = 0
        while quiet < 3:
            if self.host.worker.step():
                quiet = 0
                continue
            await asyncio.sleep(0)  # let replies reach whoever awaits them
            if self._activities_running():
                await asyncio.sleep(0.002)
                continue
            quiet += 1

    async def sleep(self, delta: timedelta) -> None:
        """Move the clock ``delta`` forward, firing every timer due on the way, in order."""
        target = self.clock() + delta
        while True:
            await self.run_until_idle()
            due = self._next_timer()
            if due is None or due > target:
                break
            self.clock.set(due)
        self.clock.set(target)
        await self.run_until_idle()

    async def skip_to_next_timer(self) -> datetime | None:
        """Jump to the next due timer and run what it wakes; the new time (None: no timer)."""
        await self.run_until_idle()
        due = self._next_timer()
        if due is None:
            return None
        self.clock.set(due)
        await self.run_until_idle()
        return self.clock()

    # -- workflows ---------------------------------------------------------------------------

    async def start(
        self, workflow: Workflow[Any, Any], input: Any, *, workflow_id: str | None = None
    ) -> str:
        wid = self.workflows.start(workflow, input, workflow_id=workflow_id)
        await self.run_until_idle()
        return wid

    async def signal(self, signal: Signal[T], workflow_id: str, payload: T) -> Outcome[Any]:
        return await self.call(self.workflows.signal(signal, workflow_id, payload))

    async def cancel(
        self, workflow: Workflow[Any, Any], workflow_id: str, reason: str = ""
    ) -> Outcome[Any]:
        return await self.call(self.workflows.cancel(workflow, workflow_id, reason))

    async def result(
        self, workflow: Workflow[Any, Any], workflow_id: str, *, within: timedelta = MAX_DELAY
    ) -> ExecutionStatus:
        """Run, skipping time to each next timer, until the execution finishes.

        Raises :class:`~sagas.WorkflowError` when it waits for something no timer brings
        (a signal the test has not sent), or would run past ``within`` of virtual time.
        """
        limit = self.clock() + within
        while True:
            await self.run_until_idle()
            status = self.workflows.status(workflow, workflow_id)
            if status.status in FINAL_STATUSES:
                return status
            if status.status == "parked":
                raise WorkflowError(f"{workflow_id} is parked: {status.parked}")
            due = self._next_timer()
            if due is None or due > limit:
                waiting = "no timer is set" if due is None else f"its next timer is at {due}"
                raise WorkflowError(
                    f"{workflow.name} {workflow_id} is {status.status} and {waiting}: it "
                    "waits for something else (a signal? send it with env.signal(...))"
                )
            self.clock.set(due)

    def status(self, workflow: Workflow[Any, Any], workflow_id: str) -> ExecutionStatus:
        return self.workflows.status(workflow, workflow_id)

    def history(self, workflow: Workflow[Any, Any], workflow_id: str) -> list[RecordedEvent]:
        return self.workflows.history(workflow, workflow_id, limit=100_000)

    # -- what is pending -------------------------------------------------------------------

    def _next_timer(self) -> datetime | None:
        worker = self.host.worker
        far = self.clock() + MAX_DELAY * 2
        rows = self.host.store.due_timers(worker.owned, until=far, limit=1)
        return rows[0].due_at if rows else None

    def _activities_running(self) -> bool:
        """Whether an execution has an activity attempt out (sent, not answered): the clock
        must not skip past its timeouts while it runs in real time."""
        if self.host.activities is None:
            return False
        now = self.clock()
        for row in self.host.store.executions(status="running", limit=1000):
            if not row.summary.get("in_flight"):
                continue
            record, _ = self.workflows.record(row.workflow_type, row.workflow_id)
            for step in record.in_flight():
                waiting = step.not_before is not None and step.not_before > now
                if step.activity is not None and not waiting:
                    return True
        return False
