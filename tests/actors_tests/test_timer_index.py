"""The worker's timer index against a real store: pages, one instant shared by many
timers, partitions it does not own, and what its own commits set and clear."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from actors import Envelope, TimerIndex, TimerRequest
from actors.timers import timer_row
from eventstore import Commit, EventRegistry, Store, TimerRow

NOW = datetime(2026, 5, 1, 9, tzinfo=UTC)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store(store_url, EventRegistry()) as s:
        yield s


def rows(n: int, due: datetime, partition: int = 0, prefix: str = "t") -> list[TimerRow]:
    env = Envelope(address="Cart/x", kind="command", name="expire")
    return [
        timer_row(f"Cart/{prefix}{i}", partition, TimerRequest("expiry", due, env))
        for i in range(n)
    ]


def index(store: Store, clock: list[datetime], page: int = 5) -> TimerIndex:
    timers = TimerIndex(store, lambda: clock[0], page=page)
    timers.assigned([0, 1])
    return timers


def fire_all(timers: TimerIndex) -> list[str]:
    fired: list[str] = []
    for _ in range(20):
        timers.refresh()
        taken = timers.take_due(1000, lambda p: True)
        fired += [r.timer_id for r in taken]
        timers.committed(Commit(timers_cleared=[r.timer_id for r in taken]))
    return fired


def test_more_timers_at_one_instant_than_a_page_all_fire_once(store: Store) -> None:
    store.commit(Commit(timers=rows(12, NOW)))
    clock = [NOW]
    fired = fire_all(index(store, clock))
    assert sorted(fired) == sorted(r.timer_id for r in rows(12, NOW))


def test_only_owned_partitions_and_due_timers_fire(store: Store) -> None:
    store.commit(Commit(timers=[*rows(3, NOW, 0, "a"), *rows(3, NOW, 7, "b")]))
    store.commit(Commit(timers=rows(2, NOW + timedelta(hours=2), 1, "later")))
    clock = [NOW]
    timers = index(store, clock)
    assert sorted(fire_all(timers)) == ["Cart/a0~expiry", "Cart/a1~expiry", "Cart/a2~expiry"]
    clock[0] = NOW + timedelta(hours=2)
    assert sorted(fire_all(timers)) == ["Cart/later0~expiry", "Cart/later1~expiry"]


def test_a_timer_moved_or_cleared_by_a_commit_is_not_fired_from_memory(store: Store) -> None:
    soon, moved = rows(2, NOW + timedelta(seconds=5))
    store.commit(Commit(timers=[soon, moved]))
    clock = [NOW]
    timers = index(store, clock)
    timers.refresh()
    assert len(timers) == 2
    later = TimerRow(moved.timer_id, moved.address, 0, NOW + timedelta(hours=1), moved.message)
    timers.committed(Commit(timers=[later], timers_cleared=[soon.timer_id]))
    clock[0] = NOW + timedelta(seconds=10)
    assert fire_all(timers) == []
