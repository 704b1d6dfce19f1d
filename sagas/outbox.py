"""The outbox of a workflow execution: what each turn records, sends and sends again.

Calls are the outbox: an input and the decisions it causes become one :class:`~actors.Turn`
(its history events, the messages to send after the commit, the durable timers set and
cancelled, a snapshot where a run ends), and whatever has no reply yet is sent again on
load and whenever a reply is overdue. Kept apart from the coordinator's message handlers
(:mod:`sagas.coordinator`), which decide what to feed; this half decides what that costs
in events and messages.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from actors import Envelope, TimerRequest, Turn
from eventstore import DomainEvent, JSONDict, tracing
from sagas.activity_tasks import is_activity_step, overrun, task_envelope, timeout_reply
from sagas.continuation import next_run
from sagas.definition import WORKFLOW_PREFIX, AnyWorkflow, split_address
from sagas.engine import Engine, correlation
from sagas.errors import ReplayError
from sagas.fold import ExecutionRecord
from sagas.history import (
    CallScheduled,
    ChildCancelRequested,
    Compensated,
    Completed,
    ContinuedAsNew,
    Decision,
    Failed,
    InputEvent,
    Started,
    TimerCancelled,
    TimerStarted,
    UpdateAccepted,
    UpdateCompleted,
)
from sagas.runs import runs_state, timer_name
from sagas.status import StepInfo

log = logging.getLogger("entityflow.sagas")
ACTOR_ROUTE = "actor:"
FINAL_DECISIONS = (Completed, Compensated, Failed)


@dataclass
class CoordinatorStats:
    """Counters a test or a metrics endpoint can read."""

    loads: int = 0
    replays: int = 0
    resends: int = 0
    parks: int = 0


class ExecutionKind(Protocol):
    """What an execution needs of its kind (:class:`~sagas.WorkflowKind`), so this
    module never imports the coordinator."""

    definition: AnyWorkflow
    resend_after: timedelta
    stats: CoordinatorStats


class ExecutionOutbox:
    """One execution's state, and what its turns record and send."""

    def __init__(self, kind: ExecutionKind, address: str) -> None:
        self.kind = kind
        self._address = address
        self._version = 0
        workflow_type, workflow_id = split_address(address)
        self.record = ExecutionRecord(address, workflow_type, workflow_id)
        self.engine: Engine | None = None
        self.divergence: ReplayError | None = None
        self._sent: dict[str, datetime | None] = {}
        self._timed_out: set[str] = set()
        self._asked: dict[int, datetime] = {}

    # -- the Actor protocol: what is sent, and sent again ------------------------------

    @property
    def address(self) -> str:
        return self._address

    @property
    def version(self) -> int:
        return self._version

    def on_loaded(self) -> list[Envelope]:
        if self.divergence is not None:
            return [] if self.record.parked is not None else [self._control("park")]
        out = [self._control("resume")] if self.record.parked is not None else []
        if self.engine is not None:
            for call in self.engine.in_flight():
                if call.not_before is not None:
                    continue
                if is_activity_step(call):
                    # It may be running on a worker now: its timeout, not a resend,
                    # decides (a second run of the same attempt would only be wasted).
                    self._sent[call.command_id] = None
                    continue
                out.append(self._call_envelope(call))
                self._sent[call.command_id] = None
        if out:
            log.info(
                "%s: loaded with %d unanswered call(s); sending them again", self.address, len(out)
            )
        return out

    def tick(self, now: datetime) -> list[Envelope]:
        if self.engine is None or self.divergence is not None:
            return []
        out: list[Envelope] = []
        for call in self.engine.in_flight():
            if call.not_before is not None and now < call.not_before:
                continue
            if is_activity_step(call):
                out += self._activity_due(call, now)
                continue
            if call.command_id not in self._sent:
                out.append(self._call_envelope(call))
            else:
                sent = self._sent[call.command_id]
                if sent is None:
                    self._sent[call.command_id] = now
                    continue
                if now - sent < self.kind.resend_after:
                    continue
                self.kind.stats.resends += 1
                log.info("%s: no reply to %s yet, sending it again", self.address, call.command_id)
                out.append(self._call_envelope(call))
            self._sent[call.command_id] = now
        return out + self._ask_children(now)

    def _ask_children(self, now: datetime) -> list[Envelope]:
        """Children that took their start but have not reported: ask again now and then
        (a start to an ended child makes it send its notice again)."""
        assert self.engine is not None
        out: list[Envelope] = []
        for child in self.engine.record.running_children():
            step = self.engine.record.steps[child.seq]
            asked = self._asked.setdefault(child.seq, now)
            if child.status == "running" and now - asked >= self.kind.resend_after:
                self._asked[child.seq] = now
                # A new command id: the first start's outcome is stored, and a repeat of
                # it would be answered from there without the child seeing it.
                again = self._call_envelope(step)
                out.append(
                    again.model_copy(
                        update={"command_id": f"{step.command_id}@{int(now.timestamp() * 1e6)}"}
                    )
                )
        return out

    def _activity_due(self, step: StepInfo, now: datetime) -> list[Envelope]:
        """An attempt due to be sent, or one that overran: its task, or its timeout."""
        if step.command_id not in self._sent:
            self._sent[step.command_id] = now
            return [self._call_envelope(step)]
        if step.command_id in self._timed_out:
            return []
        why = overrun(step, now)
        if why is None:
            return []
        self._timed_out.add(step.command_id)
        log.info("%s: %s %s", self.address, step.command_id, why[1])
        return [timeout_reply(self.address, step, correlation(step), why)]

    # -- recording ----------------------------------------------------------------------

    def _feed(self, event: InputEvent, now: datetime, status: Any) -> Turn:
        engine = self.engine
        assert engine is not None
        decisions = engine.feed(event)  # folds the input and its decisions into the record
        events: list[DomainEvent] = [event, *decisions]
        outbox: list[Envelope] = []
        timers: list[TimerRequest] = []
        cancelled: list[str] = []
        self._effects(engine, decisions, now, outbox, timers, cancelled)
        snapshot: tuple[int, JSONDict] | None = None
        ended = decisions[-1] if decisions else None
        if isinstance(ended, ContinuedAsNew):  # the next run starts in this same commit
            snapshot = (self._version + len(events), runs_state(engine.record.runs))
            engine, fed = next_run(engine, ended, now, secrets.randbits(63))
            self.engine, self.record = engine, engine.record
            self._sent, self._timed_out, self._asked = {}, set(), {}
            for given, taken in fed:
                events += [given, *taken]
                self._effects(engine, taken, now, outbox, timers, cancelled)
                decisions = taken
        self._version += len(events)
        if engine.final and any(isinstance(d, FINAL_DECISIONS) for d in decisions):
            outbox += self._child_done()
        result = self._started_result() if isinstance(event, Started) else None
        if isinstance(event, UpdateAccepted):
            result = next(d.result for d in events if isinstance(d, UpdateCompleted))
        return Turn(
            events=events,
            status=status,
            result=result,
            outbox=outbox,
            timers=timers,
            cancel_timers=cancelled,
            snapshot=snapshot,
        )

    def _effects(
        self,
        engine: Engine,
        decisions: Sequence[Decision],
        now: datetime,
        outbox: list[Envelope],
        timers: list[TimerRequest],
        cancelled: list[str],
    ) -> None:
        """The messages, timers set and timers cancelled that a run's decisions cause."""
        run = engine.run
        for decision in decisions:
            if isinstance(decision, TimerStarted):
                name = timer_name("t", decision.seq, run)
                timers.append(self._timer(name, decision.due_at, "timer", decision, run))
                continue
            if isinstance(decision, TimerCancelled):
                name = timer_name("t", decision.seq, run)
                timers[:] = [t for t in timers if t.name != name]  # set in this same turn
                cancelled.append(name)
                continue
            if isinstance(decision, ChildCancelRequested):
                outbox.append(self._cancel_child(decision))
                continue
            if not isinstance(decision, CallScheduled):
                continue
            if decision.not_before is not None and decision.not_before > now:
                # Waiting to try again: a durable timer wakes it, evicted or not.
                name = timer_name("r", decision.seq, run)
                timers.append(self._timer(name, decision.not_before, "due", decision, run))
                continue
            step = engine.record.steps[decision.seq]
            if step.command_id == decision.command_id and step.status == "pending":
                outbox.append(self._call_envelope(step))
                self._sent[step.command_id] = now

    def _timer(
        self,
        name: str,
        due: datetime,
        control: str,
        decision: TimerStarted | CallScheduled,
        run: int,
    ) -> TimerRequest:
        args: JSONDict = {"seq": decision.seq} if run == 1 else {"seq": decision.seq, "run": run}
        envelope = Envelope(address=self.address, kind="control", name=control, args=args)
        return TimerRequest(name, due, envelope)

    def _apply(self, events: Sequence[DomainEvent], now: datetime) -> None:
        for event in events:
            self.record.apply(event, now)
        self._version += len(events)

    def _cancel_child(self, decision: ChildCancelRequested) -> Envelope:
        return Envelope(
            command_id=f"{self.address}#{decision.seq}.cancel",
            address=decision.address,
            kind="control",
            name="cancel",
            args={"reason": f"its parent {self.address} ended"},
        )

    def _call_envelope(self, step: StepInfo) -> Envelope:
        """The message of one step's attempt, built inside the step's span so the work it
        causes (the entity's command, the activity's attempt) is traced as its child."""
        attributes: tracing.Attributes = {
            "entityflow.workflow": self.address,
            "entityflow.step.seq": step.seq,
            "entityflow.step.attempt": step.attempts,
            "entityflow.step.target": step.address,
            "entityflow.step.compensation": step.compensation is not None,
        }
        with tracing.span(f"step {step.command}", kind="producer", attributes=attributes):
            return self._step_message(step)

    def _step_message(self, step: StepInfo) -> Envelope:
        if is_activity_step(step):
            return task_envelope(self.address, step, correlation(step))
        return Envelope(
            command_id=step.command_id,
            address=step.address,
            kind="control" if step.address.startswith(WORKFLOW_PREFIX) else "command",
            name=step.command,
            args=step.args,
            reply_to=f"{ACTOR_ROUTE}{self.address}",
            correlation=correlation(step),
        )

    def _control(self, name: str) -> Envelope:
        return Envelope(
            command_id=f"{self.address}#{name}@{self._version}",
            address=self.address,
            kind="control",
            name=name,
        )

    def _child_done(self) -> list[Envelope]:
        """The notice to this child's parent that it has ended."""
        record = self.record
        if record.parent is None or record.parent_seq is None or not record.final:
            return []
        notice = Envelope(
            command_id=f"{self.address}#done",
            address=record.parent,
            kind="control",
            name="child_done",
            args={
                "seq": record.parent_seq,
                "child": self.address,
                "status": record.logical,
                "result": record.result,
                "error": record.error,
            },
        )
        return [notice]

    def _started_result(self) -> JSONDict:
        result: JSONDict = {"workflow_id": self.record.workflow_id, "status": self.record.status}
        if self.record.parent is not None:
            result["parent"] = self.record.parent
        return result
