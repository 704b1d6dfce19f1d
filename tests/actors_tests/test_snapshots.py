"""Snapshot + tail equals full replay, for random command sequences on the shop entities.

Hypothesis draws a sequence of commands (valid, rejected and invalid ones mixed), splits
it into batches, and runs it through the runtime with a small snapshot interval. The
state rebuilt from the newest snapshot plus its tail must equal the state rebuilt from
every event, and the actor the runtime kept in memory; and at every past version, the
state read through snapshots must equal the replay of that many events.

Each example uses a fresh entity id on the test's store, so examples do not interfere
(which is why the function-scoped store fixture is safe here).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import Client, EntityCatalog, EntitySpec, InMemoryMailbox
from eventstore import Store
from examples.shop import Account, Cart, InventoryItem
from tests.actors_tests.conftest import ALL_ENTITIES
from tests.actors_tests.support import Driver, message

Command = tuple[str, dict[str, Any]]

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

money = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("500"), places=2).map(str)
quantity = st.integers(min_value=1, max_value=30)
reservation = st.sampled_from(["r1", "r2", "r3"])
sku = st.sampled_from(["tea", "cup", "pot"])

ACCOUNT: st.SearchStrategy[Command] = st.one_of(
    st.just(("open", {"owner": "Ada"})),
    money.map(lambda m: ("deposit", {"amount": m})),
    money.map(lambda m: ("deposit", {"amount": m})),
    money.map(lambda m: ("withdraw", {"amount": m})),
    st.just(("close", {})),
    st.just(("deposit", {"amount": "-1"})),  # invalid: refused before the handler runs
)
INVENTORY: st.SearchStrategy[Command] = st.one_of(
    quantity.map(lambda q: ("restock", {"quantity": q})),
    st.tuples(reservation, quantity).map(
        lambda a: ("reserve", {"reservation_id": a[0], "quantity": a[1]})
    ),
    reservation.map(lambda r: ("release", {"reservation_id": r})),
    reservation.map(lambda r: ("commit", {"reservation_id": r})),
)
CART: st.SearchStrategy[Command] = st.one_of(
    st.tuples(sku, quantity, st.sampled_from(["1.50", "2.00"])).map(
        lambda a: ("add_item", {"sku": a[0], "quantity": a[1], "unit_price": a[2]})
    ),
    sku.map(lambda s: ("remove_item", {"sku": s})),
    st.just(("checkout", {})),
    st.just(("abandon", {})),
)
SCRIPTS = {Account: ACCOUNT, InventoryItem: INVENTORY, Cart: CART}


def _batches(commands: list[Command], sizes: list[int]) -> list[list[Command]]:
    out, i = [], 0
    for size in sizes:
        if i >= len(commands):
            break
        out.append(commands[i : i + size])
        i += size
    if i < len(commands):
        out.append(commands[i:])
    return out


def _check_snapshot_equals_replay(
    store: Store, entity: Any, commands: list[Command], sizes: list[int], every: int
) -> None:
    spec = EntitySpec.of(entity)
    entity_id = uuid.uuid4().hex
    address = spec.address(entity_id)
    driver = Driver(store, ALL_ENTITIES, snapshot_every=every)
    for batch in _batches(commands, sizes):
        driver.run([message(entity, entity_id, name, **args) for name, args in batch])
    version = store.last_version(address)

    full = spec.rehydrate(entity_id, store.load(address))
    loaded = store.load(address, snapshot_type=spec.snapshot_type)
    from_snapshot = spec.rehydrate(entity_id, loaded)
    assert (from_snapshot.version, from_snapshot.state) == (full.version, full.state)
    assert full.version == version
    if version >= every:
        assert loaded.snapshot is not None, "no snapshot was taken"
        assert len(loaded.events) < version
    if version:
        cached = driver.runtime._cache[address].actor
        assert (cached.version, cached.entity.state) == (version, full.state)  # type: ignore[attr-defined]

    client = Client(InMemoryMailbox(), store, EntityCatalog(ALL_ENTITIES))
    events = store.read(address)
    for n in range(1, version + 1):
        replayed = spec.new(entity_id)
        spec.fold(replayed, (e.event for e in events[:n]))
        assert client.state(entity, entity_id, version=n).state == replayed.state


@pytest.mark.parametrize("entity", list(SCRIPTS), ids=lambda e: e.__name__)
def test_snapshot_plus_tail_equals_full_replay(store: Store, entity: Any) -> None:
    @SETTINGS
    @given(
        commands=st.lists(SCRIPTS[entity], min_size=1, max_size=40),
        sizes=st.lists(st.integers(min_value=1, max_value=8), max_size=10),
        every=st.integers(min_value=1, max_value=4),
    )
    def check(commands: list[Command], sizes: list[int], every: int) -> None:
        if entity is Account:
            commands = [("open", {"owner": "Ada"}), *commands]
        _check_snapshot_equals_replay(store, entity, commands, sizes, every)

    check()


@SETTINGS
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["deposit", "withdraw"]), st.integers(1, 300)),
        max_size=40,
    ),
    every=st.integers(min_value=1, max_value=5),
)
def test_account_balance_follows_the_rules(
    store: Store, ops: list[tuple[str, int]], every: int
) -> None:
    """The same sequences checked against a plain model: rejected withdrawals change nothing."""
    entity_id = uuid.uuid4().hex
    driver = Driver(store, ALL_ENTITIES, snapshot_every=every)
    driver.run([message(Account, entity_id, "open", owner="Ada")])
    balance, version = 0, 1
    for name, amount in ops:
        reply = driver.reply(message(Account, entity_id, name, amount=str(amount)))
        if name == "deposit" or amount <= balance:
            balance += amount if name == "deposit" else -amount
            version += 1
            assert (reply.status, Decimal(reply.result)) == ("applied", Decimal(balance))
        else:
            assert reply.status == "rejected"
        assert reply.version == version
    spec = EntitySpec.of(Account)
    stream = store.load(f"Account/{entity_id}", snapshot_type=spec.snapshot_type)
    assert spec.rehydrate(entity_id, stream).state.balance == balance
