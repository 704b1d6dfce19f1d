"""The in-process client: bad input fails at the caller and writes nothing; state, queries
and history read the store, at any past version. SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from actors import (
    CommandContext,
    Entity,
    EntityNotFoundError,
    EntitySpec,
    Host,
    InvalidAddressError,
    InvalidArgumentsError,
    PayloadTooLargeError,
    UnknownCommandError,
    UnknownEntityTypeError,
    apply,
    command,
)
from eventstore import DomainEvent
from examples.shop import Account, Cart, InventoryItem
from tests.actors_tests.conftest import ALL_ENTITIES
from tests.actors_tests.support import Counter


class GhostState(BaseModel):
    seen: int = 0


class Haunted(DomainEvent):
    event_type = "tests.Haunted"


class Ghost(Entity[GhostState]):
    """Never registered with the host: calling it is refused before anything is sent."""

    @command
    def haunt(self, ctx: CommandContext) -> None:
        ctx.emit(Haunted())

    @apply
    def _haunted(self, event: Haunted) -> None:
        self.state.seen += 1


@pytest.fixture
def host(store_url: str) -> Iterator[Host]:
    """A host whose worker is stepped by hand, so the test sees exactly what was sent."""
    h = Host(store_url, ALL_ENTITIES, run_worker=False, snapshot_every=3)
    yield h
    h.stop()


def _nothing_written(host: Host) -> None:
    assert host.worker.step() == 0, "a message reached the mailbox"
    assert host.store.max_position() == 0, "an event reached the store"


BAD_CALLS: list[tuple[str, type[Exception], str, Callable[[Host], Any]]] = [
    (
        "an entity type not registered",
        UnknownEntityTypeError,
        r"no entity type 'Ghost' is registered; registered: Account, Cart, Counter, Inv",
        lambda h: h.client.signal(Ghost.haunt, "g"),
    ),
    (
        "a query sent as a command",
        UnknownCommandError,
        r"<query Account.balance> is a query, not a command",
        lambda h: h.client.signal(Account.balance, "a"),  # type: ignore[arg-type]
    ),
    (
        "wrong argument type",
        InvalidArgumentsError,
        r"invalid arguments for Account.deposit: amount: Input should be a valid decimal",
        lambda h: h.client.signal(Account.deposit, "a", amount="ten"),
    ),
    (
        "argument out of range",
        InvalidArgumentsError,
        r"amount: Input should be greater than 0",
        lambda h: h.client.signal(Account.deposit, "a", amount=Decimal("-1")),
    ),
    (
        "wrong nested type",
        InvalidArgumentsError,
        r"quantity: Input should be a valid integer",
        lambda h: h.client.signal(Cart.add_item, "k", sku="t", quantity=[1], unit_price="1"),
    ),
    (
        "missing argument",
        InvalidArgumentsError,
        r"invalid arguments for Account.deposit: amount: Field required",
        lambda h: h.client.signal(Account.deposit, "a"),
    ),
    (
        "missing arguments of an update",
        InvalidArgumentsError,
        r"sku: Field required; quantity: Field required; unit_price: Field required",
        lambda h: asyncio.run(h.client.update(Cart.add_item, "k")),
    ),
    (
        "extra argument",
        InvalidArgumentsError,
        r"memo: Extra inputs are not permitted",
        lambda h: h.client.signal(Account.deposit, "a", amount="1", memo="hi"),
    ),
    (
        "empty entity id",
        InvalidAddressError,
        r"entity id '' is not valid: use 1 to 200 characters without '/'",
        lambda h: h.client.signal(Account.open, "", owner="x"),
    ),
    (
        "entity id '.'",
        InvalidAddressError,
        r"entity id '\.' is not valid: .* and not \. or \.\.",
        lambda h: h.client.signal(Account.open, ".", owner="x"),
    ),
    (
        "entity id '..'",
        InvalidAddressError,
        r"entity id '\.\.' is not valid",
        lambda h: h.client.signal(Account.open, "..", owner="x"),
    ),
    (
        "entity id with a slash",
        InvalidAddressError,
        r"entity id 'a/b' is not valid",
        lambda h: h.client.signal(Account.open, "a/b", owner="x"),
    ),
    (
        "entity id with a space",
        InvalidAddressError,
        r"entity id 'a b' is not valid",
        lambda h: asyncio.run(h.client.update(Account.open, "a b", owner="x")),
    ),
    (
        "entity id with a control character",
        InvalidAddressError,
        r"is not valid",
        lambda h: h.client.signal(Account.open, "a\x00", owner="x"),
    ),
    (
        "entity id too long",
        InvalidAddressError,
        r"is not valid",
        lambda h: h.client.signal(Account.open, "x" * 201, owner="x"),
    ),
    (
        "entity id not a string",
        InvalidAddressError,
        r"entity id 7 is not valid",
        lambda h: h.client.signal(Account.open, 7, owner="x"),  # type: ignore[arg-type]
    ),
    (
        "oversized payload",
        PayloadTooLargeError,
        r"command Counter.note encodes to 1000\d{3} bytes, over the 1000000-byte limit",
        lambda h: h.client.signal(Counter.note, "c", text="x" * 1_000_000),
    ),
]


@pytest.mark.parametrize(
    ("error", "message", "call"),
    [pytest.param(e, m, c, id=name) for name, e, m, c in BAD_CALLS],
)
def test_bad_input_fails_clearly_and_writes_nothing(
    host: Host, error: type[Exception], message: str, call: Callable[[Host], Any]
) -> None:
    with pytest.raises(error, match=message):
        call(host)
    _nothing_written(host)


def test_invalid_arguments_carry_structured_errors(host: Host) -> None:
    with pytest.raises(InvalidArgumentsError) as raised:
        host.client.signal(Cart.add_item, "k", sku="", quantity=0, unit_price="x")
    assert [(e["loc"], e["type"]) for e in raised.value.errors] == [
        (["sku"], "string_too_short"),
        (["quantity"], "greater_than"),
        (["unit_price"], "decimal_parsing"),
    ]
    _nothing_written(host)


def test_payload_limit_is_configurable(host: Host) -> None:
    host.client.max_payload = 400
    host.client.signal(Counter.note, "c", text="short")
    with pytest.raises(PayloadTooLargeError, match="over the 400-byte limit"):
        host.client.signal(Counter.note, "c", text="x" * 400)
    assert host.worker.step() == 1
    assert host.store.last_version("Counter/c") == 1


@pytest.mark.parametrize(
    "read",
    [
        lambda h: h.client.state(Account, "nobody"),
        lambda h: h.client.query(Account.balance, "nobody"),
    ],
    ids=["state", "query"],
)
def test_reading_an_entity_without_events(host: Host, read: Callable[[Host], Any]) -> None:
    with pytest.raises(EntityNotFoundError, match="Account/nobody has no events"):
        read(host)


def test_read_side_rejects_bad_input(host: Host) -> None:
    with pytest.raises(InvalidAddressError):
        host.client.state(Account, "a/b")
    with pytest.raises(InvalidAddressError):
        host.client.history(Account, "")
    with pytest.raises(UnknownEntityTypeError):
        host.client.state(Ghost, "g")
    with pytest.raises(UnknownCommandError, match="is a command, not a query"):
        host.client.query(Account.deposit, "a")  # type: ignore[arg-type]


# -- time travel --------------------------------------------------------------------


def _inventory_script(host: Host) -> int:
    """Drive an inventory item through every kind of event, in three batches."""
    c = host.client
    c.signal(InventoryItem.restock, "tea", quantity=10)
    c.signal(InventoryItem.reserve, "tea", reservation_id="r1", quantity=4)
    c.signal(InventoryItem.reserve, "tea", reservation_id="r2", quantity=20)  # rejected
    assert host.worker.step() == 3
    c.signal(InventoryItem.reserve, "tea", reservation_id="r2", quantity=3)
    c.signal(InventoryItem.release, "tea", reservation_id="r1")
    c.signal(InventoryItem.commit, "tea", reservation_id="r2")
    assert host.worker.step() == 3
    c.signal(InventoryItem.restock, "tea", quantity=5)
    c.signal(InventoryItem.reserve, "tea", reservation_id="r3", quantity=12)
    c.signal(InventoryItem.restock, "tea", quantity=1)
    assert host.worker.step() == 3
    return 8


def test_state_at_every_version_equals_the_first_events_replayed(host: Host) -> None:
    version = _inventory_script(host)
    spec = EntitySpec.of(InventoryItem)
    history = host.client.history(InventoryItem, "tea")
    assert [e.version for e in history] == list(range(1, version + 1))
    # Snapshots were taken (every 3 events), so reads at a version start from one.
    assert host.store.load("InventoryItem/tea", snapshot_type=spec.snapshot_type).snapshot
    for n in range(1, version + 1):
        replayed = spec.new("tea")
        spec.fold(replayed, (e.event for e in history[:n]))
        view = host.client.state(InventoryItem, "tea", version=n)
        assert view.version == n
        assert view.state == replayed.state
        assert host.client.query(InventoryItem.available.at(n), "tea").result == (
            replayed.state.available
        )
    expected = [
        (10, {}),
        (10, {"r1": 4}),
        (10, {"r1": 4, "r2": 3}),
        (10, {"r2": 3}),
        (7, {}),
        (12, {}),
        (12, {"r3": 12}),
        (13, {"r3": 12}),
    ]
    states = [host.client.state(InventoryItem, "tea", version=n).state for n in range(1, 9)]
    assert [(s.on_hand, s.reservations) for s in states] == expected
    assert host.client.state(InventoryItem, "tea").state == states[-1]


@pytest.mark.parametrize("version", [0, -1, 9, 1000])
def test_a_version_that_does_not_exist(host: Host, version: int) -> None:
    _inventory_script(host)
    with pytest.raises(EntityNotFoundError):
        host.client.state(InventoryItem, "tea", version=version)
    with pytest.raises(EntityNotFoundError):
        host.client.query(InventoryItem.available.at(version), "tea")


def test_history_pages(host: Host) -> None:
    _inventory_script(host)
    page = host.client.history(InventoryItem, "tea", after=2, limit=3)
    assert [e.version for e in page] == [3, 4, 5]
    assert [e.event_type for e in page] == [
        "StockReserved",
        "ReservationReleased",
        "ReservationCommitted",
    ]
    assert host.client.history(InventoryItem, "tea", after=8) == []


def test_outcome_of_a_command(host: Host) -> None:
    cid = host.client.signal(Account.open, "a", owner="Ada")
    assert host.client.outcome(cid) is None  # sent, not yet processed
    host.worker.step()
    outcome = host.client.outcome(cid)
    assert outcome is not None
    assert (outcome.status, outcome.version, outcome.address, outcome.command) == (
        "applied",
        1,
        "Account/a",
        "open",
    )
