"""An execution's history laid out on a time axis: the saga timeline the console draws.

:func:`build_timeline` turns a workflow's history into :class:`Timeline` entries (the
models are in ``timeline_models.py``): each call, activity, local activity, child,
timer, signal, approval and compensation becomes one entry with a start, an end (None
while it is open), its attempts (each with its own times, verdict and error) and a
duration. It reads only the history, never the workflow's code, so the timeline of a
parked execution is drawn too; the status, compensations and pending compensations come
from the one fold (:class:`~sagas.fold.ExecutionRecord`), so the timeline and
``GET /workflows/{type}/{id}`` never disagree.

Times come from the history itself: an input's ``at``, a decision's commit time (a
decision is committed with the input that caused it). An attempt of a call starts when
it was sent: when it was scheduled, or at its ``not_before`` when it waited for a retry.
Entries are in history order (the version of their first event), which is time order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from eventstore import RecordedEvent
from sagas.definition import split_address
from sagas.fold import ExecutionRecord
from sagas.history import (
    ActivityHeartbeat,
    ApprovalStep,
    CallCompleted,
    CallScheduled,
    CancelRequested,
    ChildCancelRequested,
    ChildCompleted,
    Compensated,
    Compensating,
    CompensationRepaired,
    CompensationSkipped,
    Completed,
    Failed,
    LocalActivityRan,
    Parked,
    Patched,
    Resumed,
    SignalReceived,
    Started,
    TimerCancelled,
    TimerFired,
    TimerStarted,
)
from sagas.status import CHILD_PREFIX
from sagas.timeline_models import EntryKind, Timeline, TimelineAttempt, TimelineEntry

__all__ = ["build_timeline"]

DECIDED = ("approved", "rejected", "gave_up")


def _seconds(start: datetime, end: datetime | None) -> float | None:
    return None if end is None else max(0.0, (end - start).total_seconds())


class _Builder:
    """Walks a history once, keeping the entries open until their end is recorded."""

    def __init__(self) -> None:
        self.entries: list[TimelineEntry] = []
        self.calls: dict[int, TimelineEntry] = {}
        self.timers: dict[int, TimelineEntry] = {}
        self.locals: dict[int, TimelineEntry] = {}
        self.approvals: dict[str, TimelineEntry] = {}
        self.skipped: dict[int, TimelineEntry] = {}
        self.ended_at: datetime | None = None
        self.at: datetime | None = None
        self.version = 0

    def add(self, entry: TimelineEntry) -> TimelineEntry:
        self.entries.append(entry)
        return entry

    def instant(self, kind: EntryKind, ident: str, name: str, status: str, **more: Any) -> None:
        at = self._now()
        self.add(
            TimelineEntry(
                id=ident,
                kind=kind,
                name=name,
                start=at,
                end=at,
                duration_seconds=0.0,
                status=status,
                first_version=self.version,
                last_version=self.version,
                **more,
            )
        )

    def _now(self) -> datetime:
        assert self.at is not None
        return self.at

    def touch(self, entry: TimelineEntry) -> None:
        entry.last_version = self.version

    def close(self, entry: TimelineEntry, status: str) -> None:
        entry.status, entry.end = status, self._now()
        entry.duration_seconds = _seconds(entry.start, entry.end)
        self.touch(entry)

    # -- the events ---------------------------------------------------------------------

    def started(self, e: Started) -> None:
        detail: dict[str, Any] = {"input": e.input}
        if e.parent is not None:
            detail["parent"] = e.parent
        self.instant("workflow", "started", "started", "started", detail=detail)

    def scheduled(self, e: CallScheduled) -> None:
        now = self._now()
        begins = max(now, e.not_before) if e.not_before is not None else now
        attempt = TimelineAttempt(
            attempt=e.attempt,
            scheduled_at=now,
            started_at=begins,
            ended_at=None,
            duration_seconds=None,
            status="pending",
        )
        entry = self.calls.get(e.seq)
        if entry is None:
            entry = self.calls[e.seq] = self.add(
                TimelineEntry(
                    id=f"{_call_kind(e)}-{e.seq}",
                    kind=_call_kind(e),
                    name=_call_name(e),
                    seq=e.seq,
                    start=now,
                    end=None,
                    duration_seconds=None,
                    status="pending",
                    compensation=e.compensation,
                    guards=list(e.guards),
                    detail={"address": e.address, "command": e.command, "args": e.args},
                    first_version=self.version,
                    last_version=self.version,
                )
            )
        entry.status, entry.end, entry.duration_seconds = "pending", None, None
        entry.attempts.append(attempt)
        self.touch(entry)

    def call_completed(self, e: CallCompleted) -> None:
        entry = self.calls.get(e.seq)
        if entry is None or not entry.attempts or entry.attempts[-1].attempt != e.attempt:
            return  # a reply the execution ignored (late, or for an older attempt)
        attempt = entry.attempts[-1]
        attempt.status, attempt.error, attempt.code = e.status, e.error, e.code
        attempt.ended_at = e.at
        attempt.duration_seconds = _seconds(attempt.started_at, e.at)
        entry.error = e.error
        if e.result is not None:
            entry.detail["result"] = e.result
        if entry.kind == "child" and e.status == "applied":
            entry.status = "running"  # the child took its start; ChildCompleted ends it
            self.touch(entry)
        else:
            self.close(entry, e.status)

    def child_completed(self, e: ChildCompleted) -> None:
        entry = self.calls.get(e.seq)
        if entry is None:
            return
        entry.error = e.error
        if e.result is not None:
            entry.detail["result"] = e.result
        self.close(entry, e.status)

    def child_cancel(self, e: ChildCancelRequested) -> None:
        entry = self.calls.get(e.seq)
        if entry is not None:
            entry.detail["cancel_requested_at"] = self._now().isoformat()
            self.touch(entry)

    def heartbeat(self, e: ActivityHeartbeat) -> None:
        entry = self.calls.get(e.seq)
        if entry is None or e.started:  # taken by a worker: not progress
            return
        for attempt in entry.attempts:
            if attempt.attempt == e.attempt:
                attempt.heartbeats += 1
        entry.detail["heartbeat"] = e.details
        self.touch(entry)

    def local_ran(self, e: LocalActivityRan) -> None:
        now = self._now()
        entry = self.locals.get(e.seq)
        if entry is None:
            entry = self.locals[e.seq] = self.add(
                TimelineEntry(
                    id=f"local_activity-{e.seq}",
                    kind="local_activity",
                    name=e.name,
                    seq=e.seq,
                    start=now,
                    end=None,
                    duration_seconds=None,
                    status="pending",
                    first_version=self.version,
                    last_version=self.version,
                )
            )
        # A local attempt runs inside one batch: the worker's clock does not move during it.
        entry.attempts.append(
            TimelineAttempt(
                attempt=e.attempt,
                scheduled_at=now,
                started_at=now,
                ended_at=now,
                duration_seconds=0.0,
                status=e.status,
                error=e.error,
                code=e.code,
            )
        )
        entry.error = e.error
        if e.result is not None:
            entry.detail["result"] = e.result
        if e.retry_at is not None:
            entry.status, entry.detail["retry_at"] = "pending", e.retry_at.isoformat()
            self.touch(entry)
        else:
            entry.detail.pop("retry_at", None)
            self.close(entry, e.status)

    def timer_started(self, e: TimerStarted) -> None:
        self.timers[e.seq] = self.add(
            TimelineEntry(
                id=f"timer-{e.seq}",
                kind="timer",
                name=e.label,
                seq=e.seq,
                start=self._now(),
                end=None,
                duration_seconds=None,
                status="pending",
                detail={"due_at": e.due_at.isoformat()},
                first_version=self.version,
                last_version=self.version,
            )
        )

    def timer_ended(self, seq: int, status: str) -> None:
        entry = self.timers.get(seq)
        if entry is not None and entry.status == "pending":
            self.close(entry, status)

    def signal(self, e: SignalReceived) -> None:
        self.instant(
            "signal", f"signal-v{self.version}", e.name, "received", detail={"payload": e.payload}
        )

    def approval(self, e: ApprovalStep) -> None:
        now = self._now()
        entry = self.approvals.get(e.name)
        if entry is None or e.kind == "requested":
            entry = self.approvals[e.name] = self.add(
                TimelineEntry(
                    id=f"approval-{e.name}-v{self.version}",
                    kind="approval",
                    name=e.name,
                    start=now,
                    end=None,
                    duration_seconds=None,
                    status="open",
                    detail={"steps": []},
                    first_version=self.version,
                    last_version=self.version,
                )
            )
        step: dict[str, Any] = {"kind": e.kind, "at": now.isoformat(), "approvers": e.approvers}
        if e.by is not None:
            step["by"] = e.by
        if e.comment:
            step["comment"] = e.comment
        entry.detail["steps"].append(step)
        entry.detail["approvers"] = list(e.approvers)
        entry.detail["next_at"] = e.next_at.isoformat() if e.next_at else None
        if e.kind in DECIDED:
            self.close(entry, e.kind)
        else:
            self.touch(entry)

    def skipped_compensation(self, e: CompensationSkipped) -> None:
        self.instant(
            "compensation",
            f"compensation-skipped-{e.index}",
            f"compensation #{e.index}",
            "skipped",
            compensation=e.index,
            detail={"reason": e.reason},
        )

    def ended(self, name: str, status: str, error: str | None, detail: dict[str, Any]) -> None:
        self.ended_at = self._now()
        self.instant("workflow", name, name, status, error=error, detail=detail)


def _repaired(b: _Builder, e: CompensationRepaired) -> None:
    """A person retried or skipped the failed compensation: the execution goes on."""
    b.ended_at = None
    status = "retried" if e.action == "retry" else "skipped"
    name = f"compensation #{e.index} {status} by an operator"
    b.instant("workflow", f"repair-v{b.version}", name, status, detail={"reason": e.reason})


def _call_kind(e: CallScheduled) -> EntryKind:
    if e.compensation is not None:
        return "compensation"
    if e.activity is not None:
        return "activity"
    if e.address.startswith(CHILD_PREFIX) and e.command == "start":
        return "child"
    return "step"


def _call_name(e: CallScheduled) -> str:
    kind = _call_kind(e)
    if kind == "child":
        return e.address.removeprefix(CHILD_PREFIX)
    if kind == "activity":
        return e.command
    return f"{e.address}.{e.command}"


_Handler = Callable[[_Builder, Any], None]
_HANDLERS: dict[type[Any], _Handler] = {
    Started: _Builder.started,
    CallScheduled: _Builder.scheduled,
    CallCompleted: _Builder.call_completed,
    ChildCompleted: _Builder.child_completed,
    ChildCancelRequested: _Builder.child_cancel,
    ActivityHeartbeat: _Builder.heartbeat,
    LocalActivityRan: _Builder.local_ran,
    TimerStarted: _Builder.timer_started,
    TimerFired: lambda b, e: b.timer_ended(e.seq, "fired"),
    TimerCancelled: lambda b, e: b.timer_ended(e.seq, "cancelled"),
    SignalReceived: _Builder.signal,
    ApprovalStep: _Builder.approval,
    CompensationSkipped: _Builder.skipped_compensation,
    Patched: lambda b, e: b.instant(
        "patch", f"patch-v{b.version}", e.change_id, "taken", detail={}
    ),
    CompensationRepaired: _repaired,
    CancelRequested: lambda b, e: b.instant(
        "workflow",
        f"cancel-v{b.version}",
        "cancel requested",
        "requested",
        detail={"reason": e.reason},
    ),
    Compensating: lambda b, e: b.instant(
        "workflow",
        "compensating",
        "compensating",
        "compensating",
        error=e.error,
        detail={"cancelled": e.cancelled},
    ),
    Completed: lambda b, e: b.ended("completed", "completed", None, {"result": e.result}),
    Compensated: lambda b, e: b.ended("compensated", "compensated", e.error, {}),
    Failed: lambda b, e: b.ended("failed", "failed", e.error, {"compensation": e.compensation}),
    Parked: lambda b, e: b.instant(
        "workflow",
        f"parked-v{b.version}",
        "parked",
        "parked",
        error=e.error,
        detail={"step": e.step, "expected": e.expected, "actual": e.actual},
    ),
    Resumed: lambda b, e: b.instant("workflow", f"resumed-v{b.version}", "resumed", "resumed"),
}


def build_timeline(
    events: Iterable[RecordedEvent], *, memo: dict[str, Any] | None = None
) -> Timeline:
    """The timeline of one execution from its history (oldest first; of an execution
    that continued as new, the current run's).

    ``memo`` is what a replay of the code rebuilt (the API passes it; None when the
    code no longer replays). An empty history is a :class:`ValueError`: nothing started.
    """
    history = list(events)
    if not history:
        raise ValueError("an empty history has no timeline: the execution has not started")
    address = history[0].stream_id
    workflow_type, workflow_id = split_address(address)
    record = ExecutionRecord(address, workflow_type, workflow_id)
    record.version = history[0].version - 1  # a run after continue-as-new starts further on
    builder = _Builder()
    for rec in history:
        record.apply(rec.event, rec.timestamp)
        builder.version = rec.version
        builder.at = getattr(rec.event, "at", None) or rec.timestamp
        handler = _HANDLERS.get(type(rec.event))
        if handler is not None:
            handler(builder, rec.event)
    view = record.view()
    return Timeline(
        workflow_type=workflow_type,
        workflow_id=workflow_id,
        status=view.status,
        started_at=view.started_at,
        ended_at=builder.ended_at,
        updated_at=view.updated_at,
        version=view.version,
        run=view.run,
        result=view.result,
        error=view.error,
        failed_compensation=view.failed_compensation,
        cancelled=view.cancelled,
        entries=builder.entries,
        compensations=view.compensations,
        compensations_pending=view.compensations_pending,
        waiting_on=[_waiting(e) for e in builder.entries if e.end is None],
        memo=memo,
    )


def _waiting(entry: TimelineEntry) -> str:
    if entry.kind == "timer":
        return f"timer #{entry.seq} ({entry.name}) due {entry.detail['due_at']}"
    if entry.kind == "approval":
        return f"approval {entry.name} by {', '.join(entry.detail.get('approvers', []))}"
    attempt = f" (attempt {entry.attempts[-1].attempt})" if entry.attempts else ""
    return f"{entry.kind} #{entry.seq} {entry.name}{attempt}"
