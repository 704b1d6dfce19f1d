"""The coordinator: each workflow execution is an actor at ``workflow:<Type>/<id>``.

It runs on the same mailbox and workers as the entities, through the runtime's generic
actor protocol (``actors.kinds``). An execution lives in the worker's cache between
steps: a reply is fed to its engine in memory, and the reply plus the decisions it
causes are committed as one batch of history events. Only after eviction or a restart
is it rebuilt by replaying its history through the current code.

Calls are the outbox (:mod:`sagas.outbox`): each is recorded (``wf.CallScheduled``)
before it is sent, and sent only after the commit. Whatever has no reply is re-sent when
the execution is loaded and, while it is cached, whenever a reply is overdue (the broker
may have lost it); entities deduplicate by the call's deterministic command id.

Timers (``ctx.sleep``, timeouts, and the wait before a call's next attempt) are durable
timers of the actor layer: set in the commit that records them, fired by the worker
owning the execution's partition as a ``timer`` (or ``due``) control message, which is
fed to the engine as ``wf.TimerFired``. An execution waiting only on timers may be
evicted from the cache; the timer loads it again.

An execution that continues as new (``ctx.continue_as_new``) hands over to its next run
in the turn that ended the run (:mod:`sagas.continuation`) and asks for a snapshot at the
boundary, so loading it reads only the current run's events (:mod:`sagas.runs`).

A replay that diverges parks the execution: nothing is written but a ``wf.Parked``
annotation; it takes no signals until code that replays its history is deployed, and it
resumes by itself the next time it is loaded.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from actors import Envelope, TimerRequest, Turn
from eventstore import EventRegistry, ExecutionRow, JSONDict, LoadedStream, Store
from sagas.definition import AnyWorkflow
from sagas.engine import Engine, describe
from sagas.errors import (
    InvalidWorkflowInputError,
    NonDeterminismError,
    ReplayError,
    UnknownWorkflowError,
)
from sagas.history import (
    HISTORY_EVENTS,
    ActivityHeartbeat,
    CallCompleted,
    CancelRequested,
    ChildCompleted,
    CompensationRepaired,
    Parked,
    Resumed,
    SignalReceived,
    Started,
    TimerFired,
    UpdateAccepted,
)
from sagas.outbox import CoordinatorStats, ExecutionOutbox
from sagas.protocol import Refusal
from sagas.repairs import repair_refusal
from sagas.replayer import replay
from sagas.runs import RUN_SNAPSHOT, runs_from_state
from sagas.status import UNFINISHED_STATUSES
from sagas.updates import UpdateRefusedError

log = logging.getLogger("entityflow.sagas")
PARKED_TIMER_RETRY = timedelta(minutes=1)


class WorkflowKind:
    """The actor kind of one workflow type: pass it to ``Host(..., kinds=[...])``."""

    def __init__(self, definition: AnyWorkflow, *, resend_after: float = 30.0) -> None:
        definition.check()
        self.definition = definition
        self.resend_after = timedelta(seconds=resend_after)
        self._registry = EventRegistry(HISTORY_EVENTS)
        self.stats = CoordinatorStats()

    @property
    def type_name(self) -> str:
        return self.definition.type_name

    @property
    def snapshot_type(self) -> str | None:
        return RUN_SNAPSHOT  # taken only where a run ends (Turn.snapshot)

    @property
    def snapshot_every(self) -> int | None:
        return None

    @property
    def registry(self) -> EventRegistry:
        return self._registry

    def load(self, address: str, stream: LoadedStream) -> WorkflowActor:
        self.stats.loads += 1
        return WorkflowActor.from_history(self, address, stream)

    def unfinished(self, store: Store) -> list[str]:
        """Every running, compensating or parked execution.

        Those with unanswered calls must be woken to send them again; the others are
        woken too, so that code that no longer replays them is found (and they are
        parked) when it is deployed rather than when their next signal comes.
        """
        found: list[str] = []
        page = 500
        for status in UNFINISHED_STATUSES:
            after: str | None = None
            while True:
                rows = store.executions(
                    workflow_type=self.definition.name, status=status, limit=page, after=after
                )
                found.extend(r.address for r in rows)
                if len(rows) < page:
                    break
                after = rows[-1].address
        return found

    def __repr__(self) -> str:
        return f"WorkflowKind({self.definition.name!r})"


class WorkflowActor(ExecutionOutbox):
    """One execution as the runtime drives it: the messages it takes, on top of the
    outbox that records and sends what they cause."""

    @classmethod
    def from_history(cls, kind: WorkflowKind, address: str, stream: LoadedStream) -> WorkflowActor:
        actor = cls(kind, address)
        actor._version = stream.version
        runs = runs_from_state(stream.snapshot.state) if stream.snapshot is not None else []
        actor.record.runs = list(runs)
        actor.record.version = stream.snapshot.originator_version if stream.snapshot else 0
        try:
            for rec in stream.events:
                actor.record.apply(rec.event, rec.timestamp)
            # A failed execution is rebuilt too: a person may repair its compensation.
            if actor.record.started and (
                not actor.record.final or actor.record.logical == "failed"
            ):
                kind.stats.replays += 1
                actor.engine = replay(kind.definition, address, stream.events, runs)
                actor.record = actor.engine.record
        except ReplayError as exc:
            log.error("%s", exc)
            actor.divergence = exc
        except Exception as exc:  # a history this code cannot read: park, never stop the worker
            log.exception("%s: cannot rebuild the execution", address)
            actor.divergence = ReplayError(
                address, f"cannot rebuild the execution: {describe(exc)}"
            )
        return actor

    # -- the Actor protocol -----------------------------------------------------------

    def handle(self, envelope: Envelope, now: datetime) -> Turn:
        try:
            return self._handle(envelope, now)
        except Exception as exc:
            # A bug in the engine (or in code it runs outside the coroutine): park rather
            # than stop the worker; nothing of this message is recorded.
            log.exception("%s: internal error on %s %s", self.address, envelope.kind, envelope.name)
            self.engine = None
            self.divergence = ReplayError(
                self.address,
                f"internal error while handling {envelope.kind} {envelope.name!r}: {describe(exc)}",
            )
            return Turn(
                status=None if envelope.kind == "reply" else "rejected",
                error=str(self.divergence),
                code=None if envelope.kind == "reply" else Refusal.PARKED,
                outbox=[self._control("park")],
            )

    def snapshot_state(self) -> JSONDict | None:
        return None

    def visibility(self) -> ExecutionRow | None:
        return self.record.row() if self.record.started else None

    # -- messages ---------------------------------------------------------------------

    def _handle(self, env: Envelope, now: datetime) -> Turn:
        if env.kind == "reply":
            return self._on_reply(env, now)
        if env.kind == "signal":
            return self._on_signal(env, now)
        if env.kind == "control":
            handler = self._controls().get(env.name)
            if handler is not None:
                return handler(env, now)
        return Turn(
            status="invalid",
            error=f"a workflow takes start, cancel, signals and replies, not {env.kind} "
            f"{env.name!r}",
        )

    def _controls(self) -> dict[str, Callable[[Envelope, datetime], Turn]]:
        return {
            "start": self._on_start,
            "cancel": self._on_cancel,
            "park": self._on_park,
            "resume": self._on_resume,
            "heartbeat": self._on_heartbeat,
            "timer": self._on_timer,
            "due": self._on_due,
            "child_done": self._on_child_done,
            "repair": self._on_repair,
            "update": self._on_update,
        }

    def _on_start(self, env: Envelope, now: datetime) -> Turn:
        parent, parent_seq = env.args.get("parent"), env.args.get("parent_seq")
        if not (isinstance(parent, str) and isinstance(parent_seq, int)):
            parent, parent_seq = None, None
        if self.record.started:
            # A parent asking again: if this child has ended, tell it again (its first
            # notice may have been lost); the answer names the parent, so a parent that
            # did not start this execution learns that the id was taken.
            again = parent is not None and self.record.final and parent == self.record.parent
            return Turn(result=self._started_result(), outbox=self._child_done() if again else [])
        try:
            body = self.kind.definition.encode_input(env.args.get("input"))
        except InvalidWorkflowInputError as exc:
            return Turn(status="invalid", error=str(exc))
        self.engine = Engine(self.kind.definition, self.address)
        self.record = self.engine.record
        event = Started(
            at=now, input=body, seed=secrets.randbits(63), parent=parent, parent_seq=parent_seq
        )
        return self._feed(event, now, status="applied")

    def _on_child_done(self, env: Envelope, now: datetime) -> Turn:
        engine, seq = self.engine, env.args.get("seq")
        if engine is None or self.divergence is not None or not isinstance(seq, int):
            return Turn(status=None)
        step = engine.record.steps.get(seq)
        if step is None or step.address != env.args.get("child"):
            return Turn(status=None)
        if not engine.accepts_child_result(seq):
            return Turn(status=None)
        event = ChildCompleted(
            at=now,
            seq=seq,
            status=str(env.args.get("status")),
            result=env.args.get("result"),
            error=env.args.get("error"),
        )
        return self._feed(event, now, status=None)

    def _on_reply(self, env: Envelope, now: datetime) -> Turn:
        reply, engine = env.reply, self.engine
        if reply is None or engine is None or self.divergence is not None:
            return Turn(status=None)
        seq, _, attempt = (env.correlation or "").partition(".")
        if not (seq.isdigit() and attempt.isdigit()):
            return Turn(status=None)
        if not engine.accepts_reply(int(seq), int(attempt), reply.address):
            return Turn(status=None)
        sent = engine.record.steps[int(seq)].command_id
        if reply.command_id != sent and not reply.command_id.startswith(f"{sent}@"):
            return Turn(status=None)  # an earlier run's reply: that run has ended
        self._sent.pop(reply.command_id, None)
        event = CallCompleted(
            at=now,
            seq=int(seq),
            attempt=int(attempt),
            status=reply.status,
            result=reply.result,
            error=reply.error,
            version=reply.version,
            code=reply.code,
        )
        return self._feed(event, now, status=None)

    def _on_signal(self, env: Envelope, now: datetime) -> Turn:
        refused = self._refusal("signals")
        if refused is not None:
            return refused
        assert self.engine is not None
        if self.engine.phase != "running" and not self.engine.continuing:
            return Turn(
                status="rejected",
                error=f"{self.address} is {self.engine.phase}; it takes no more signals",
                code=Refusal.CLOSING,
            )
        try:
            payload = self.kind.definition.encode_signal(env.name, env.args.get("payload"))
        except (UnknownWorkflowError, InvalidWorkflowInputError) as exc:
            return Turn(status="invalid", error=str(exc))
        refusal = self.engine.signal_refusal(env.name, payload)
        if refusal is not None:  # e.g. an approval by someone not asked: nothing recorded
            return Turn(status="invalid", error=f"{self.address}: {refusal}")
        return self._feed(SignalReceived(at=now, name=env.name, payload=payload), now, "applied")

    def _on_cancel(self, env: Envelope, now: datetime) -> Turn:
        refused = self._refusal("cancellation")
        if refused is not None:
            return refused
        assert self.engine is not None
        if self.engine.phase not in ("running", "finishing"):
            return Turn(result={"status": self.record.status})
        reason = str(env.args.get("reason") or "")[:500]
        return self._feed(CancelRequested(at=now, reason=reason), now, status="applied")

    def _on_heartbeat(self, env: Envelope, now: datetime) -> Turn:
        """Progress from a running attempt: kept (the next attempt starts from it) and
        pushes its heartbeat timeout back. Stale ones are dropped; nobody awaits them."""
        engine, seq, attempt = self.engine, env.args.get("seq"), env.args.get("attempt")
        if engine is None or self.divergence is not None or engine.final:
            return Turn(status=None)
        step = engine.record.steps.get(seq) if isinstance(seq, int) else None
        if step is None or step.status != "pending" or step.attempts != attempt:
            return Turn(status=None)
        started = env.args.get("started") is True  # a worker took it (schedule-to-start)
        event = ActivityHeartbeat(
            seq=step.seq, attempt=step.attempts, details=env.args.get("details"), started=started
        )
        self._apply([event], now)
        return Turn(events=[event], status=None)

    def _on_update(self, env: Envelope, now: datetime) -> Turn:
        """A caller's update: checked, rehearsed on a copy of the memo, and only then
        recorded and applied; its result is the command's result."""
        refused = self._refusal("updates")
        if refused is not None:
            return refused
        engine = self.engine
        assert engine is not None
        if engine.phase != "running":
            error = f"{self.address} is {engine.phase} and takes no more updates"
            return Turn(status="rejected", error=error, code=Refusal.CLOSING)
        try:
            spec = self.kind.definition.update_spec(str(env.args.get("name")))
            parsed = spec.parse(env.args.get("args"))
        except (UnknownWorkflowError, InvalidWorkflowInputError) as exc:
            return Turn(status="invalid", error=str(exc))
        try:
            spec.rehearse(engine.record.query_view(engine.memo), parsed)
        except UpdateRefusedError as exc:
            return Turn(status="rejected", error=str(exc), code=Refusal.UPDATE_REFUSED)
        event = UpdateAccepted(at=now, name=spec.name, args=parsed.model_dump(mode="json"))
        return self._feed(event, now, status="applied")

    def _on_repair(self, env: Envelope, now: datetime) -> Turn:
        """A person retries or skips the compensation that ran out of attempts; refused,
        with nothing recorded, unless this execution failed on exactly that one."""
        index, action = env.args.get("index"), env.args.get("action")
        reason = str(env.args.get("reason") or "")[:500]
        if not self.record.started:
            return self._refusal("repair") or Turn(status="rejected")
        refusal = repair_refusal(self.record, self.engine is not None, index, action, reason)
        if refusal is not None:
            code = Refusal.PARKED if self.divergence is not None else Refusal.NOT_REPAIRABLE
            return Turn(status="rejected", error=refusal, code=code)
        assert isinstance(index, int) and action in ("retry", "skip")
        event = CompensationRepaired(at=now, index=index, action=action, reason=reason)
        return self._feed(event, now, status="applied")

    def _on_timer(self, env: Envelope, now: datetime) -> Turn:
        """A timer came due. A parked execution keeps it (set again a minute on), so the
        code that replays it still gets it; a finished one has nothing to wake."""
        engine, seq = self.engine, env.args.get("seq")
        if self.divergence is not None and isinstance(seq, int):
            later = TimerRequest(f"t{seq}", now + PARKED_TIMER_RETRY, env)
            return Turn(status=None, timers=[later])
        if engine is None or engine.final or not isinstance(seq, int):
            return Turn(status=None)
        if env.args.get("run", 1) != engine.run or not engine.accepts_timer(seq):
            return Turn(status=None)
        return self._feed(TimerFired(at=now, seq=seq), now, status=None)

    def _on_due(self, env: Envelope, now: datetime) -> Turn:
        """A call's retry wait is over: send what is due (the actor may have been evicted)."""
        return Turn(status=None, outbox=self.tick(now))

    def _on_park(self, env: Envelope, now: datetime) -> Turn:
        div = self.divergence
        if div is None or self.record.parked is not None:
            return Turn()
        self.kind.stats.parks += 1
        fields: dict[str, Any] = {"error": str(div)}
        if isinstance(div, NonDeterminismError):
            fields.update(step=div.step, expected=div.expected, actual=div.actual)
        event = Parked(**fields)
        self._apply([event], now)
        return Turn(events=[event])

    def _on_resume(self, env: Envelope, now: datetime) -> Turn:
        if self.divergence is not None or self.record.parked is None:
            return Turn()
        event = Resumed()
        self._apply([event], now)
        return Turn(events=[event])

    def _refusal(self, what: str) -> Turn | None:
        if not self.record.started:
            return Turn(
                status="rejected",
                error=f"{self.address} has not been started",
                code=Refusal.NOT_STARTED,
            )
        if self.divergence is not None:
            return Turn(
                status="rejected",
                error=f"{self.address} is parked and takes no {what}: {self.divergence}",
                code=Refusal.PARKED,
            )
        if self.record.final or self.engine is None:
            return Turn(
                status="rejected",
                error=f"{self.address} has already finished ({self.record.status})",
                code=Refusal.FINISHED,
            )
        return None
