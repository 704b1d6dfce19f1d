"""Replay: rebuild an execution's engine from its history, checking the code still agrees.

:func:`replay` feeds the recorded inputs to a fresh :class:`~sagas.engine.Engine` and
compares every decision the code takes with the one recorded at that point; the first
difference is a :class:`~sagas.NonDeterminismError` naming the step and both decisions.
What the code may only learn from the history (which patches it took, what a local
activity returned) is handed to the engine before it starts.

Only the current run is replayed: in a history that continued as new, the runs before
the last ``wf.ContinuedAsNew`` are folded (for their chain) but run no code.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from eventstore import RecordedEvent
from sagas.definition import AnyWorkflow, split_address
from sagas.engine import Engine, describe
from sagas.errors import NonDeterminismError, ReplayError
from sagas.fold import ExecutionRecord
from sagas.history import (
    Annotation,
    CallScheduled,
    CompensationRegistered,
    Decision,
    InputEvent,
    LocalActivityRan,
    Patched,
    Started,
)
from sagas.runs import RunInfo, current_run


def replay(
    definition: AnyWorkflow,
    address: str,
    events: Iterable[RecordedEvent],
    runs: Sequence[RunInfo] = (),
) -> Engine:
    """Rebuild an engine from a history, checking that the code still takes its decisions.

    ``runs`` is the chain of runs before ``events`` when they are only the current run's
    (loaded from the snapshot at its start)."""
    everything = list(events)
    cut, events = current_run(everything)
    chain = list(runs)
    if cut:
        before = ExecutionRecord(address, *split_address(address))
        before.runs, before.version = chain, everything[0].version - 1
        for rec in everything[:cut]:
            before.apply(rec.event, rec.timestamp)
        chain = before.runs
    first = events[0].event if events else None
    engine = Engine(definition, address, run=first.run if isinstance(first, Started) else 1)
    engine.record.runs = chain
    engine.record.version = events[0].version - 1 if events else 0
    engine.replaying = True
    engine.recorded_patches = frozenset(
        rec.event.change_id for rec in events if isinstance(rec.event, Patched)
    )
    engine.local.recorded = {
        (rec.event.seq, rec.event.attempt): rec.event
        for rec in events
        if isinstance(rec.event, LocalActivityRan)
    }
    try:
        _replay_into(engine, events)
    except ReplayError:
        raise
    except Exception as exc:
        raise ReplayError(address, f"replaying the history failed: {describe(exc)}") from exc
    engine.replaying = False
    return engine


def _replay_into(engine: Engine, events: Iterable[RecordedEvent]) -> None:
    address = engine.address
    produced: deque[Decision] = deque()
    for rec in events:
        event = rec.event
        if isinstance(event, Annotation):
            engine.record.apply(event, rec.timestamp)
            continue
        if isinstance(event, InputEvent):
            if produced:
                raise diverged(address, rec.version, None, produced[0])
            try:
                produced.extend(engine.feed(event))
            except Exception as exc:
                raise ReplayError(
                    address,
                    f"replaying history event #{rec.version} ({event.event_type}) failed: "
                    f"{describe(exc)}",
                    rec.version,
                ) from exc
        elif isinstance(event, Decision):
            if not produced:
                raise diverged(address, rec.version, event, None)
            mine = produced.popleft()
            if mine.signature() != event.signature():
                raise diverged(address, rec.version, event, mine)
            engine.adopt(event)
        else:
            raise ReplayError(
                address,
                f"history event #{rec.version} ({event.event_type}) is not a workflow event",
            )
    if produced:
        raise diverged(address, None, None, produced[0])


def diverged(
    address: str, position: int | None, expected: Decision | None, actual: Decision | None
) -> NonDeterminismError:
    """The error for a replay where the history has ``expected`` and the code did ``actual``."""
    named = next(
        (d for d in (expected, actual) if isinstance(d, CallScheduled)),
        expected or actual,
    )
    if isinstance(named, CallScheduled):
        step = f"step {named.seq}"
    elif isinstance(named, CompensationRegistered):
        step = f"compensation #{named.index}"
    else:
        step = named.describe() if named is not None else "the end"
    return NonDeterminismError(
        address,
        position,
        step,
        expected.describe() if expected is not None else "nothing more at this point",
        actual.describe() if actual is not None else "nothing at this point",
    )
