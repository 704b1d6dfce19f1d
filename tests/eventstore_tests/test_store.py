"""The Store against SQLite and PostgreSQL: one commit, one transaction, or nothing.

Every test body runs on both backends through the ``store_url`` fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent

from eventstore import (
    Commit,
    ConcurrencyConflictError,
    DomainEvent,
    EventDecodeError,
    EventRegistry,
    ExecutionRow,
    FencedTracking,
    Outcome,
    RecordedEvent,
    Snapshot,
    Store,
    StoreConfigError,
    StoreUnavailableError,
)

T0 = datetime(2030, 1, 1, tzinfo=UTC)


class Added(DomainEvent):
    event_type = "tests.Added"
    n: int


class Labelled(DomainEvent):
    event_type = "tests.Labelled"
    label: str
    price: Decimal


REGISTRY = EventRegistry([Added, Labelled])


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store(store_url, REGISTRY) as s:
        yield s


def _events(stream: str, ns: list[int], *, start: int = 1) -> list[RecordedEvent]:
    return [
        RecordedEvent(stream, v, Added(n=n), timestamp=T0 + timedelta(seconds=v))
        for v, n in enumerate(ns, start=start)
    ]


def _outcome(command_id: str, version: int = 1, result: object = None) -> Outcome[Any]:
    return Outcome(
        command_id=command_id,
        address="s/1",
        command="add",
        status="applied",
        result=result,
        version=version,
        recorded_at=T0,
    )


def _fingerprint(store: Store) -> tuple[int, list[int]]:
    return store.max_position(), [e.version for e in store.read("a")]


# -- streams -------------------------------------------------------------------------


def test_commit_and_load_round_trip(store: Store) -> None:
    first = RecordedEvent("a", 1, Added(n=1), timestamp=T0, command_id="c1")
    second = RecordedEvent("a", 2, Labelled(label="tea", price=Decimal("1.10")), timestamp=T0)
    ids = store.commit(Commit(events=[first, RecordedEvent("b", 1, Added(n=9)), second]))
    assert len(ids) == 3 and ids == sorted(ids)
    loaded = store.load("a")
    assert loaded.snapshot is None
    assert loaded.version == 2
    assert [(e.stream_id, e.version, e.event, e.command_id) for e in loaded.events] == [
        ("a", 1, Added(n=1), "c1"),
        ("a", 2, Labelled(label="tea", price=Decimal("1.10")), None),
    ]
    assert loaded.events[0].timestamp == T0
    assert loaded.events[1].event_type == "tests.Labelled"
    assert store.last_version("b") == 1


def test_an_empty_stream(store: Store) -> None:
    loaded = store.load("nothing")
    assert not loaded
    assert loaded.version == 0
    assert store.last_version("nothing") == 0
    assert store.read("nothing") == []


def test_load_at_a_version_and_read_pages(store: Store) -> None:
    store.commit(Commit(events=_events("a", [10, 20, 30, 40, 50])))
    assert [e.event for e in store.load("a", version=3).events] == [
        Added(n=10),
        Added(n=20),
        Added(n=30),
    ]
    assert store.load("a", version=3).version == 3
    assert [e.version for e in store.read("a", after=1, limit=2)] == [2, 3]
    assert [e.version for e in store.read("a", upto=4, desc=True, limit=2)] == [4, 3]
    assert [e.version for e in store.read("a", after=5)] == []


def test_a_taken_version_fails_the_whole_commit(store: Store) -> None:
    store.commit(Commit(events=_events("a", [1, 2])))
    before = _fingerprint(store)
    with pytest.raises(ConcurrencyConflictError, match="committing a batch"):
        store.commit(
            Commit(
                events=[*_events("b", [7]), *_events("a", [3], start=2)],
                outcomes=[_outcome("c-new")],
                positions=[FencedTracking("log#0", 5, expected=None)],
            )
        )
    assert _fingerprint(store) == before
    assert store.last_version("b") == 0
    assert store.outcome("c-new") is None
    assert store.position("log#0") is None
    # The same batch at the right version goes through.
    store.commit(Commit(events=[*_events("b", [7]), *_events("a", [3], start=3)]))
    assert store.last_version("a") == 3


def test_a_recorded_command_id_fails_the_whole_commit(store: Store) -> None:
    store.commit(Commit(events=_events("a", [1]), outcomes=[_outcome("c1")]))
    with pytest.raises(ConcurrencyConflictError):
        store.commit(Commit(events=_events("a", [2], start=2), outcomes=[_outcome("c1", 2)]))
    assert store.last_version("a") == 1
    outcome = store.outcome("c1")
    assert outcome is not None and outcome.version == 1


def test_only_a_dead_lettered_outcome_is_replaced_by_a_later_one(store: Store) -> None:
    """A re-driven command records its new outcome over ``dead_lettered``, and only there."""
    parked = replace(_outcome("c1", 0), status="dead_lettered", error="RuntimeError: bug")
    store.commit(Commit(outcomes=[parked]))
    store.commit(Commit(events=_events("a", [1]), outcomes=[_outcome("c1", 1, result=7)]))
    outcome = store.outcome("c1")
    assert outcome is not None and (outcome.status, outcome.result) == ("applied", 7)
    assert outcome.error is None
    with pytest.raises(ConcurrencyConflictError):  # applied stays applied: nothing twice
        store.commit(Commit(events=_events("a", [2], start=2), outcomes=[_outcome("c1", 2)]))
    assert store.last_version("a") == 1
    outcome = store.outcome("c1")
    assert outcome is not None and outcome.version == 1


# -- fenced tracking --------------------------------------------------------------------


def test_fenced_tracking_is_a_compare_and_set(store: Store) -> None:
    assert store.position("log#0") is None
    store.commit(Commit(events=_events("a", [1]), positions=[FencedTracking("log#0", 1)]))
    assert store.position("log#0") == 1

    # A second first-writer (it never saw the row) is stale.
    with pytest.raises(ConcurrencyConflictError, match=r"'log#0' is no longer None"):
        store.commit(Commit(events=_events("x", [1]), positions=[FencedTracking("log#0", 1)]))

    store.commit(
        Commit(events=_events("a", [2], start=2), positions=[FencedTracking("log#0", 4, 1)])
    )
    assert store.position("log#0") == 4

    # A zombie that last saw position 1 writes nothing at all.
    before = _fingerprint(store)
    with pytest.raises(ConcurrencyConflictError, match="another worker has processed"):
        store.commit(
            Commit(
                events=[*_events("z", [1]), *_events("a", [3], start=3)],
                outcomes=[_outcome("zombie")],
                positions=[FencedTracking("log#0", 5, expected=1)],
            )
        )
    assert _fingerprint(store) == before
    assert store.last_version("z") == 0
    assert store.outcome("zombie") is None
    assert store.position("log#0") == 4


def test_positions_of_several_partitions_move_together(store: Store) -> None:
    store.commit(Commit(positions=[FencedTracking("log#0", 3), FencedTracking("log#1", 7)]))
    with pytest.raises(ConcurrencyConflictError):
        store.commit(
            Commit(positions=[FencedTracking("log#0", 5, 3), FencedTracking("log#1", 9, 6)])
        )
    assert (store.position("log#0"), store.position("log#1")) == (3, 7)


def test_a_commit_without_events(store: Store) -> None:
    """A batch of duplicates and rejections still records outcomes and moves positions."""
    assert not Commit()
    store.commit(Commit(outcomes=[_outcome("c1")], positions=[FencedTracking("log#0", 2)]))
    assert store.position("log#0") == 2
    assert store.outcome("c1") is not None
    assert store.max_position() == 0


# -- snapshots -------------------------------------------------------------------------


def test_load_starts_from_the_newest_snapshot_of_the_current_shape(store: Store) -> None:
    store.commit(Commit(events=_events("a", [1, 2, 3, 4, 5])))
    store.save_snapshots(
        [
            Snapshot("a", 2, "A@1", {"total": 3}, T0),
            Snapshot("a", 4, "A@1", {"total": 10}, T0),
        ]
    )
    loaded = store.load("a", snapshot_type="A@1")
    assert loaded.snapshot is not None
    assert (loaded.snapshot.originator_version, loaded.snapshot.state) == (4, {"total": 10})
    assert [e.version for e in loaded.events] == [5]
    assert loaded.version == 5

    at_3 = store.load("a", version=3, snapshot_type="A@1")
    assert at_3.snapshot is not None and at_3.snapshot.originator_version == 2
    assert [e.version for e in at_3.events] == [3]

    at_1 = store.load("a", version=1, snapshot_type="A@1")
    assert at_1.snapshot is None and [e.version for e in at_1.events] == [1]

    # A snapshot of an older state shape is ignored: everything is replayed.
    other = store.load("a", snapshot_type="A@2")
    assert other.snapshot is None and len(other.events) == 5
    # Without a snapshot type, snapshots are not even looked at.
    assert store.load("a").snapshot is None


def test_a_snapshot_taken_twice_is_skipped(store: Store) -> None:
    store.commit(Commit(events=_events("a", [1, 2])))
    store.save_snapshots([Snapshot("a", 2, "A@1", {"total": 3}, T0)])
    store.save_snapshots(
        [Snapshot("a", 2, "A@1", {"total": 999}, T0), Snapshot("b", 1, "A@1", {}, T0)]
    )
    loaded = store.load("a", snapshot_type="A@1")
    assert loaded.snapshot is not None and loaded.snapshot.state == {"total": 3}
    assert store.load("b", snapshot_type="A@1").snapshot is not None


# -- outcomes, executions, notifications ------------------------------------------------


def test_outcomes_keep_their_result(store: Store) -> None:
    results: list[object] = [None, 3, "12.50", [1, "x"], {"k": {"n": [True, None]}}]
    store.commit(Commit(outcomes=[_outcome(f"c{i}", result=r) for i, r in enumerate(results)]))
    found = store.outcomes([f"c{i}" for i in range(len(results))] + ["unknown"])
    assert [found[f"c{i}"].result for i in range(len(results))] == results
    assert "unknown" not in found
    assert found["c1"] == _outcome("c1", result=3)
    assert store.outcomes([]) == {}


def test_many_outcomes_in_one_lookup(store: Store) -> None:
    ids = [f"c{i}" for i in range(1200)]
    store.commit(Commit(outcomes=[_outcome(c) for c in ids]))
    assert set(store.outcomes([*ids, *ids[:10]])) == set(ids)


def test_old_outcomes_can_be_forgotten(store: Store) -> None:
    old = Outcome("old", "s/1", "add", "applied", recorded_at=T0)
    new = Outcome("new", "s/1", "add", "applied", recorded_at=T0 + timedelta(days=2))
    store.commit(Commit(outcomes=[old, new]))
    assert store.forget_outcomes_before(T0 + timedelta(days=1)) == 1
    assert set(store.outcomes(["old", "new"])) == {"new"}


def test_executions_are_upserted_and_listed(store: Store) -> None:
    def row(wid: str, status: str, t: int = 0) -> ExecutionRow:
        return ExecutionRow(
            address=f"workflow:Order/{wid}",
            workflow_type="Order",
            workflow_id=wid,
            status=status,
            updated_at=T0 + timedelta(seconds=t),
            summary={"step": t},
        )

    store.commit(Commit(executions=[row("o1", "running"), row("o2", "running")]))
    store.commit(Commit(executions=[row("o1", "completed", 5)]))
    found = store.execution("workflow:Order/o1")
    assert found is not None
    assert (found.status, found.summary, found.started_at, found.updated_at) == (
        "completed",
        {"step": 5},
        T0,
        T0 + timedelta(seconds=5),
    )
    assert store.execution("workflow:Order/none") is None
    assert [e.workflow_id for e in store.executions(status="running")] == ["o2"]
    assert [e.workflow_id for e in store.executions(workflow_type="Order", limit=1)] == ["o1"]
    assert [e.workflow_id for e in store.executions(after="workflow:Order/o1")] == ["o2"]
    assert store.executions(workflow_type="Other") == []


def test_notifications_follow_commit_order(store: Store) -> None:
    store.commit(Commit(events=_events("a", [1, 2])))
    store.commit(Commit(events=_events("b", [3])))
    store.commit(Commit(events=_events("a", [4], start=3)))
    log = store.notifications(0, 10)
    assert [(e.stream_id, e.version) for e in log] == [("a", 1), ("a", 2), ("b", 1), ("a", 3)]
    positions = [e.position or 0 for e in log]
    assert positions == sorted(positions) and store.max_position() == positions[-1]
    assert [e.version for e in store.notifications(positions[1], 1)] == [1]


def test_two_store_objects_share_one_database(store_url: str, store: Store) -> None:
    with Store(store_url, REGISTRY) as other:
        other.commit(Commit(events=_events("a", [1]), positions=[FencedTracking("log#0", 1)]))
        assert store.last_version("a") == 1
        assert store.position("log#0") == 1


# -- failures ----------------------------------------------------------------------------


def test_a_corrupt_stored_event_fails_clearly(store: Store) -> None:
    store._recorder.insert_events(
        [StoredEvent(originator_id="a", originator_version=1, topic="tests.Added", state=b"{")]
    )
    with pytest.raises(EventDecodeError, match=r"stored event a@1 is not entityflow JSON"):
        store.load("a")


def test_ping(store: Store) -> None:
    store.ping()


def test_an_unreachable_database() -> None:
    with pytest.raises(StoreUnavailableError, match="cannot reach PostgreSQL"):
        Store("postgresql://postgres@127.0.0.1:1/test?schema=nowhere", REGISTRY)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://localhost/db", "unsupported store URL 'mysql://localhost/db'"),
        ("postgresql://localhost/db?color=red", r"unknown store URL option\(s\) \['color'\]"),
    ],
)
def test_unusable_urls(url: str, message: str) -> None:
    with pytest.raises(StoreConfigError, match=message):
        Store(url, REGISTRY)


def test_an_in_memory_sqlite_store() -> None:
    with Store("sqlite:///:memory:", REGISTRY) as store:
        store.commit(Commit(events=_events("a", [1, 2])))
        assert store.last_version("a") == 2
        assert store.kind == "sqlite"
