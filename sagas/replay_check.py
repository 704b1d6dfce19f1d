"""Replay stored histories against the current code before deploying it.

A workflow change that reorders, adds or drops a step without ``ctx.patched`` parks
every execution that runs into it. ``check_histories`` replays histories (from the store,
or from files ``export_histories`` wrote) through the code that is about to be deployed
and reports each divergence with the execution and the step; ``entityflow replay-check``
exits non-zero on any, so it can gate a deploy in CI. Of an execution that continued as
new, only the current run is read, checked and exported: the runs before it have ended
and are never replayed again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eventstore import EventRecord, EventRegistry, RecordedEvent, Store
from sagas.definition import AnyWorkflow, split_address
from sagas.engine import describe
from sagas.errors import NonDeterminismError, ReplayError
from sagas.replayer import replay
from sagas.runs import RUN_SNAPSHOT
from sagas.status import FINAL_STATUSES, UNFINISHED_STATUSES

History = tuple[AnyWorkflow, str, list[RecordedEvent]]
PAGE = 500
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class Divergence:
    """One history the code no longer replays."""

    workflow_type: str
    workflow_id: str
    step: str | None
    expected: str | None
    actual: str | None
    error: str

    def describe(self) -> str:
        if self.step is None:
            return f"{self.workflow_type} {self.workflow_id}: {self.error}"
        return (
            f"{self.workflow_type} {self.workflow_id}, {self.step}: the history has "
            f"{self.expected}; the code now does {self.actual}"
        )


@dataclass
class ReplayReport:
    checked: dict[str, int] = field(default_factory=dict)
    divergences: list[Divergence] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.divergences

    @property
    def total(self) -> int:
        return sum(self.checked.values())


def check_histories(
    histories: Iterable[History], progress: Callable[[int], None] | None = None
) -> ReplayReport:
    """Replay each history through its workflow's code; collect what diverges."""
    report = ReplayReport()
    for wf, address, events in histories:
        report.checked[wf.name] = report.checked.get(wf.name, 0) + 1
        try:
            replay(wf, address, events)
        except NonDeterminismError as exc:
            report.divergences.append(
                Divergence(
                    wf.name, split_address(address)[1], exc.step, exc.expected, exc.actual, str(exc)
                )
            )
        except ReplayError as exc:
            report.divergences.append(
                Divergence(wf.name, split_address(address)[1], None, None, None, describe(exc))
            )
        if progress is not None:
            progress(report.total)
    return report


def stored_histories(
    store: Store,
    workflows: Sequence[AnyWorkflow],
    *,
    statuses: Sequence[str] = (*UNFINISHED_STATUSES, *sorted(FINAL_STATUSES)),
    sample: int | None = None,
) -> Iterator[History]:
    """The histories of the store's executions of these workflows (at most ``sample``
    of each type; unfinished ones first, as they are the ones a deploy can break)."""
    for wf in workflows:
        taken = 0
        for status in statuses:
            after: str | None = None
            while sample is None or taken < sample:
                rows = store.executions(
                    workflow_type=wf.name, status=status, limit=PAGE, after=after
                )
                for row in rows:
                    if sample is not None and taken >= sample:
                        break
                    taken += 1
                    # The current run only: earlier runs have ended and never replay.
                    current = store.load(row.address, snapshot_type=RUN_SNAPSHOT)
                    yield wf, row.address, current.events
                if len(rows) < PAGE:
                    break
                after = rows[-1].address


def export_histories(histories: Iterable[History], directory: Path) -> int:
    """Write each history as ``<dir>/<type>/<id>.json`` (a list of event records)."""
    written = 0
    for wf, address, events in histories:
        folder = directory / _UNSAFE.sub("_", wf.name)
        folder.mkdir(parents=True, exist_ok=True)
        name = _UNSAFE.sub("_", split_address(address)[1])
        records = [rec.view().model_dump(mode="json") for rec in events]
        (folder / f"{name}.json").write_text(json.dumps(records, indent=1))
        written += 1
    return written


def file_histories(
    directory: Path, workflows: Sequence[AnyWorkflow], registry: EventRegistry
) -> Iterator[History]:
    """Histories that :func:`export_histories` wrote, decoded through ``registry``
    (upcasters apply); files of workflow types not given are passed over."""
    by_name = {wf.name: wf for wf in workflows}
    for path in sorted(directory.rglob("*.json")):
        records = [EventRecord.model_validate(r) for r in json.loads(path.read_text())]
        if not records:
            continue
        address = records[0].stream_id
        wf = by_name.get(split_address(address)[0])
        if wf is None:
            continue
        events = [
            RecordedEvent(
                originator_id=r.stream_id,
                originator_version=r.version,
                event=registry.decode(r.type, r.schema_version, r.data),
                timestamp=r.timestamp,
                command_id=r.command_id,
            )
            for r in records
        ]
        yield wf, address, events
