"""The hand-over from one run of an execution to the next (``ctx.continue_as_new``).

The coordinator calls :func:`next_run` in the turn whose input ended a run: the next
run's ``wf.Started`` and the signals the ended run never read are fed to a fresh engine
there, so the end of one run and the start of the next are one commit. Nothing can
arrive in between: the execution is one actor, and its next message is handled by the
new run. The chain of runs is carried in the new run's record (and in the snapshot the
coordinator asks for at the boundary, see :mod:`sagas.runs`).
"""

from __future__ import annotations

from datetime import datetime

from sagas.engine import Engine
from sagas.history import ContinuedAsNew, Decision, InputEvent, SignalReceived, Started

Fed = list[tuple[InputEvent, list[Decision]]]


def next_run(old: Engine, ended: ContinuedAsNew, now: datetime, seed: int) -> tuple[Engine, Fed]:
    """The next run's engine and what it was fed (its start, then the carried signals)."""
    engine = Engine(old.definition, old.address, run=ended.run + 1)
    engine.record.version = old.record.version
    engine.record.runs = list(old.record.runs)
    start = Started(
        at=now,
        input=ended.input,
        seed=seed,
        parent=old.record.parent,
        parent_seq=old.record.parent_seq,
        run=ended.run + 1,
    )
    fed: Fed = [(start, engine.feed(start))]
    for signal in ended.carried:
        if engine.phase != "running":
            break  # the new run already ended: what it did not read ends with it
        received = SignalReceived(
            at=now, name=str(signal["name"]), payload=signal.get("payload"), carried=True
        )
        fed.append((received, engine.feed(received)))
    return engine, fed
