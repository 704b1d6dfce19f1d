"""The runs of one execution: what ``ctx.continue_as_new`` chains together.

An execution that continues as new keeps its address (so its mailbox key, its partition
and its owner), and its history stays one stream: each run is a range of its versions,
from the run's ``wf.Started`` to its ``wf.ContinuedAsNew``, and the next run begins in the
same commit. What keeps loading flat is a snapshot taken at each boundary: its state is
the run that ended there (this module's :class:`RunInfo`), and loading from it reads
only the current run's events. Without that snapshot (its save failed after the commit),
the whole stream is read and everything before the last boundary is passed over: slower,
the same result.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from eventstore import JSONDict, RecordedEvent
from sagas.errors import WorkflowNotFoundError
from sagas.history import ContinuedAsNew

RUN_SNAPSHOT = "workflow-runs@1"
"""The state type of the snapshot taken where a run ends (see the module's text)."""


class RunInfo(BaseModel):
    """One finished run of an execution: where its history is, and how it ended."""

    model_config = ConfigDict(frozen=True)

    run: int
    first_version: int
    last_version: int
    started_at: datetime | None = None
    ended_at: datetime | None = None
    input: Any = None
    next_input: Any = None
    signals_carried: int = 0


def runs_state(runs: Sequence[RunInfo]) -> JSONDict:
    """The state of the snapshot at a boundary: the run that ended there. Not the whole
    chain, so that loading costs the same in the hundredth run as in the second; readers
    that show the chain fold the stream (:class:`~sagas.ExecutionRecord`)."""
    return {"runs": [r.model_dump(mode="json") for r in runs[-1:]]}


def runs_from_state(state: JSONDict) -> list[RunInfo]:
    return [RunInfo.model_validate(r) for r in state.get("runs", [])]


def current_run(events: Sequence[RecordedEvent]) -> tuple[int, list[RecordedEvent]]:
    """(how many events precede the current run, the current run's events)."""
    cut = 0
    for i, rec in enumerate(events):
        if isinstance(rec.event, ContinuedAsNew):
            cut = i + 1
    return cut, list(events[cut:])


def step_prefix(address: str, run: int) -> str:
    """The prefix of the command ids of a run's calls: a later run's call never reuses an
    earlier run's id (an entity would answer it from the old outcome)."""
    return address if run == 1 else f"{address}~{run}"


def timer_name(kind: str, seq: int, run: int) -> str:
    """The name of a run's durable timer: an old run's firing never clears a new run's."""
    return f"{kind}{seq}" if run == 1 else f"{kind}{seq}-{run}"


def run_range(
    address: str, runs: Sequence[RunInfo], current: tuple[int, int], run: int
) -> tuple[int, int | None]:
    """The first and last version of one run's history (last None: the current run,
    ``current`` being its number and first version)."""
    if run == current[0]:
        return current[1], None
    for info in runs:
        if info.run == run:
            return info.first_version, info.last_version
    raise WorkflowNotFoundError(f"{address} has no run {run}: its runs are 1 to {current[0]}")
