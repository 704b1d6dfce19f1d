"""Entity timers: a command a handler sends its own entity later (the cart's expiry).

The worker runs in its thread on a clock the test moves; the timer rows are read from
the store (SQLite and PostgreSQL), so what is asserted is what survives a restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import BaseModel

from actors import (
    Command,
    CommandContext,
    Entity,
    HandlerCrashedError,
    Host,
    InMemoryMailbox,
    apply,
    command,
    query,
)
from actors.timers import due_time, timer_row
from eventstore import DomainEvent, Store
from examples.shop import ENTITIES, Cart
from examples.shop.carts import CART_TTL
from tests.actors_tests.support import registry_of

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class ManualClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Reminded(DomainEvent):
    event_type = "test.Reminded"
    note: str


class NaggerState(BaseModel):
    reminders: int = 0


class Nagger(Entity[NaggerState]):
    """Sets timers whose arguments are checked like a call's."""

    @command
    def nag(self, ctx: CommandContext, minutes: float, note: str = "again") -> None:
        ctx.schedule("nag", timedelta(minutes=minutes), Nagger.remind, note=note)

    @command
    def nag_elsewhere(self, ctx: CommandContext) -> None:
        ctx.schedule("bad", timedelta(minutes=1), Cart.expire)

    @command
    def nag_wrongly(self, ctx: CommandContext) -> None:
        ctx.schedule("bad", timedelta(minutes=1), Nagger.remind, note=123)  # type: ignore[arg-type]

    @command
    def stop(self, ctx: CommandContext) -> None:
        ctx.cancel_timer("nag")

    @command
    def remind(self, ctx: CommandContext, note: str) -> None:
        ctx.emit(Reminded(note=note))

    @query
    def reminders(self) -> int:
        return self.state.reminders

    @apply
    def _reminded(self, event: Reminded) -> None:
        self.state.reminders += 1


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def host(store_url: str, clock: ManualClock) -> Iterator[Host]:
    store = Store(store_url, registry_of((*ENTITIES, Nagger)))
    with Host(store, (*ENTITIES, Nagger), mailbox=InMemoryMailbox(), clock=clock) as h:
        yield h
    store.close()


def eventually(predicate: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def event_types(host: Host, address: str) -> list[str]:
    return [e.event_type for e in host.store.load(address).events]


async def add(host: Host, cart: str, sku: str = "sku-1") -> None:
    await host.client.update(Cart.add_item, cart, sku=sku, quantity=1, unit_price=Decimal("3"))


async def test_an_untouched_cart_expires_once_after_its_ttl(host: Host, clock: ManualClock) -> None:
    await add(host, "c1")
    [row] = host.store.timers("Cart/c1")
    assert row.due_at == clock.now + CART_TTL
    clock.now += CART_TTL - timedelta(seconds=1)
    await asyncio.sleep(0.3)
    assert event_types(host, "Cart/c1") == ["ItemAdded"]
    clock.now += timedelta(seconds=1)
    eventually(lambda: event_types(host, "Cart/c1")[-1] == "CartAbandoned", "the expiry")
    assert host.store.timers("Cart/c1") == []
    clock.now += CART_TTL * 3
    await asyncio.sleep(0.3)
    assert event_types(host, "Cart/c1") == ["ItemAdded", "CartAbandoned"]
    assert host.store.load("Cart/c1").events[-1].event.reason == "expired"  # type: ignore[attr-defined]


async def test_every_change_moves_the_expiry_back(host: Host, clock: ManualClock) -> None:
    await add(host, "c2", "a")
    clock.now += timedelta(minutes=20)
    await add(host, "c2", "b")
    [row] = host.store.timers("Cart/c2")
    assert row.due_at == clock.now + CART_TTL
    clock.now += timedelta(minutes=20)  # 40 minutes after the first change
    await asyncio.sleep(0.3)
    assert event_types(host, "Cart/c2") == ["ItemAdded", "ItemAdded"]
    clock.now += timedelta(minutes=10)
    eventually(lambda: event_types(host, "Cart/c2")[-1] == "CartAbandoned", "the expiry")


async def test_checking_out_cancels_the_expiry(host: Host, clock: ManualClock) -> None:
    await add(host, "c3")
    await host.client.update(Cart.checkout, "c3")
    assert host.store.timers("Cart/c3") == []
    clock.now += CART_TTL * 2
    await asyncio.sleep(0.3)
    assert event_types(host, "Cart/c3") == ["ItemAdded", "CheckedOut"]


async def test_a_timer_carries_its_checked_arguments(host: Host, clock: ManualClock) -> None:
    await host.client.update(Nagger.nag, "n1", minutes=5, note="call back")
    clock.now += timedelta(minutes=5)
    eventually(lambda: event_types(host, "Nagger/n1") == ["test.Reminded"], "the reminder")
    assert host.store.load("Nagger/n1").events[0].event.note == "call back"  # type: ignore[attr-defined]


async def test_a_cancelled_timer_never_fires(host: Host, clock: ManualClock) -> None:
    await host.client.update(Nagger.nag, "n2", minutes=5)
    await host.client.update(Nagger.stop, "n2")
    assert host.store.timers("Nagger/n2") == []
    clock.now += timedelta(hours=1)
    await asyncio.sleep(0.3)
    assert event_types(host, "Nagger/n2") == []


async def test_a_timer_due_in_memory_and_cancelled_before_it_fires_stays_cancelled(
    host: Host, clock: ManualClock
) -> None:
    await host.client.update(Nagger.nag, "n3", minutes=0.5)  # within the worker's horizon
    assert len(host.worker.timers) >= 1
    await host.client.update(Nagger.stop, "n3")
    clock.now += timedelta(minutes=1)
    await asyncio.sleep(0.3)
    assert event_types(host, "Nagger/n3") == []


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        (Nagger.nag_elsewhere, "one of its own commands"),
        (Nagger.nag_wrongly, "note"),
    ],
)
async def test_a_timer_to_another_entity_or_with_bad_arguments_fails_the_command(
    host: Host, handler: Command[[], None], message: str
) -> None:
    with pytest.raises(HandlerCrashedError, match=message):
        await host.client.update(handler, "n4")
    assert host.store.timers("Nagger/n4") == []


@pytest.mark.parametrize(
    ("delay", "message"),
    [
        (timedelta(seconds=-1), "negative"),
        (timedelta(days=5000), "longer than"),
        (datetime(2030, 1, 1), "time zone"),
        (30, "timedelta"),
    ],
)
def test_bad_delays_are_refused_with_a_clear_message(delay: object, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        due_time(datetime.now(UTC), delay)  # type: ignore[arg-type]


def test_a_past_due_time_fires_at_once() -> None:
    now = datetime.now(UTC)
    assert due_time(now, now - timedelta(hours=1)) == now


def test_a_moved_timer_is_a_new_command() -> None:
    from actors import Envelope
    from actors.timers import TimerRequest

    env = Envelope(address="Cart/x", kind="command", name="expire")
    now = datetime.now(UTC)
    first = timer_row("Cart/x", 3, TimerRequest("expiry", now, env))
    moved = timer_row("Cart/x", 3, TimerRequest("expiry", now + timedelta(seconds=1), env))
    assert first.timer_id == moved.timer_id == "Cart/x~expiry"
    assert Envelope.decode(first.message.encode()).command_id != (
        Envelope.decode(moved.message.encode()).command_id
    )
