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
