"""Where a due timer goes in the worker's batch: before the broker messages, so a backlog
does not hold it back, but after a message the batch has for the timer's own actor (so a
signal read just before its timeout still wins). The worker is stepped by the test, on
the in-memory mailbox and a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from pydantic import BaseModel

from actors import CommandContext, Entity, Host, InMemoryMailbox, apply, command
from actors.timers import TIMER_SLACK, BatchPace
from eventstore import DomainEvent, Store
from tests.actors_tests.support import registry_of
from tests.actors_tests.test_entity_timers import ManualClock

BACKLOG = 1_200
HANDLED: list[tuple[str, str]] = []
"""(address, note) of each note handled, in the order the worker handled them."""


class Noted(DomainEvent):
    event_type = "test.Noted"
    note: str


class NoterState(BaseModel):
    notes: list[str] = []


class Noter(Entity[NoterState]):
    @command
    def arm(self, ctx: CommandContext) -> None:
        ctx.schedule("due", timedelta(minutes=1), Noter.note, note="due")

    @command
    def disarm(self, ctx: CommandContext) -> None:
        ctx.cancel_timer("due")

    @command
    def note(self, ctx: CommandContext, note: str) -> None:
        HANDLED.append((self.address, note))
        ctx.emit(Noted(note=note))

    @apply
    def _noted(self, event: Noted) -> None:
        self.state.notes.append(event.note)


@pytest.fixture
def host(store_url: str) -> Iterator[tuple[Host, ManualClock]]:
    clock = ManualClock()
    HANDLED.clear()
    store = Store(store_url, registry_of((Noter,)))
    with Host(store, (Noter,), mailbox=InMemoryMailbox(), clock=clock, run_worker=False) as h:
        h.worker.start()
        yield h, clock
        h.worker.close()
    store.close()


def step(host: Host) -> tuple[int, int]:
    """One batch: (messages handled, of which timers fired)."""
    fired = host.worker.stats.timers_fired
    handled = host.worker.step()
    return handled, host.worker.stats.timers_fired - fired


def armed(host: Host) -> None:
    host.mailbox.send(host.client.prepare(Noter.arm, "n0"))
    while not host.store.timers("Noter/n0"):
        step(host)


def load(host: Host, n: int) -> None:
    for i in range(n):
        host.mailbox.send(host.client.prepare(Noter.note, f"n{1 + i % 40}", note="load"))


def test_a_due_timer_goes_before_the_backlog_in_its_batch(
    host: tuple[Host, ManualClock],
) -> None:
    h, clock = host
    armed(h)
    load(h, BACKLOG)
    assert step(h) == (500, 0)  # the timer is a minute away
    HANDLED.clear()
    clock.now += timedelta(minutes=2)
    assert step(h) == (500, 1)  # the timer and 499 broker messages
    assert HANDLED[0] == ("Noter/n0", "due"), "the backlog's messages went first"
    assert len(HANDLED) == 500
    assert h.store.timers("Noter/n0") == []


def test_a_message_for_the_timers_own_actor_in_the_batch_comes_first(
    host: tuple[Host, ManualClock],
) -> None:
    h, clock = host
    armed(h)
    load(h, 20)
    h.mailbox.send(h.client.prepare(Noter.note, "n0", note="message"))
    clock.now += timedelta(minutes=2)
    assert step(h) == (22, 1)
    assert len(HANDLED) == 22
    assert [h for h in HANDLED if h[0] == "Noter/n0"] == [
        ("Noter/n0", "message"),
        ("Noter/n0", "due"),
    ]
    assert HANDLED[-1] == ("Noter/n0", "due")  # after the whole batch read from the broker


def test_a_cancel_read_in_the_timers_batch_wins(host: tuple[Host, ManualClock]) -> None:
    h, clock = host
    armed(h)
    h.mailbox.send(h.client.prepare(Noter.disarm, "n0"))
    clock.now += timedelta(minutes=2)
    assert step(h) == (2, 1)  # taken as due, then found stale behind the cancel
    assert HANDLED == []
    assert h.store.timers("Noter/n0") == []
    clock.now += timedelta(minutes=5)
    assert step(h) == (0, 0)


def test_a_batch_read_with_a_timer_near_ends_about_when_it_comes_due(
    host: tuple[Host, ManualClock],
) -> None:
    """Under a backlog a full batch would run past the timer, which would then wait for the
    next one; the batch is cut to what ends TIMER_SLACK after the due time instead."""
    h, clock = host
    armed(h)
    load(h, BACKLOG)
    h.worker.pace = BatchPace()
    h.worker.pace.took(1.0, 100)  # batches have been taking 10 ms a message
    clock.now += timedelta(minutes=1) - timedelta(milliseconds=60)
    assert TIMER_SLACK == 0.07
    assert step(h) == (13, 0)  # 60 ms to the timer and 70 ms past it, at 10 ms a message
    clock.now += timedelta(milliseconds=60)
    handled, fired = step(h)
    assert fired == 1 and HANDLED[-handled] == ("Noter/n0", "due")


def test_the_pace_leaves_batches_whole_without_a_timer_near() -> None:
    pace = BatchPace(slack=0.04)
    assert pace.room(500, 0.0) == 500, "no estimate yet: nothing to size by"
    pace.took(0.1, 1_000)  # 0.1 ms a message
    assert pace.room(500, None) == 500
    assert pace.room(500, 60.0) == 500
    assert pace.room(500, 0.0) == 400
    assert pace.room(500, 0.01) == 500
    pace.took(10.0, 10)  # a second a message (a slow handler): still one at a time
    assert pace.room(500, 0.0) == 1
