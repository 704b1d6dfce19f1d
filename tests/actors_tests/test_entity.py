"""Entities at run time: arguments validated from the signature, read-only queries,
results encoded by the return annotation, state rebuilt from the store.

Every test that touches storage runs on SQLite and on PostgreSQL (``store`` fixture).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from actors import (
    ActorsError,
    Client,
    Entity,
    EntityCatalog,
    EntitySpec,
    InMemoryMailbox,
    InvalidArgumentsError,
    QueryMutationError,
    UnknownCommandError,
    apply,
    update,
)
from eventstore import DomainEvent, Store, upcaster
from examples.shop import Account, Cart
from tests.actors_tests.conftest import ALL_ENTITIES
from tests.actors_tests.support import Counter, Driver, command, registry_of

FIXED = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def _client(store: Store) -> Client:
    return Client(InMemoryMailbox(), store, EntityCatalog(ALL_ENTITIES))


def test_arguments_are_validated_at_the_worker_from_the_signature(store: Store) -> None:
    """An envelope that skipped the client's checks is refused with pydantic's reasons."""
    d = Driver(store, ALL_ENTITIES)
    d.run([command(Account, "a", "open", owner="Ada")])
    bad = [
        command(Account, "a", "deposit", amount="lots"),
        command(Account, "a", "deposit", amount="-5"),
        command(Account, "a", "deposit", amount="1.001"),
        command(Account, "a", "deposit"),
        command(Account, "a", "deposit", amount="1", memo="x"),
        command(Account, "a", "teleport"),
    ]
    replies = d.replies(bad)
    assert [r.status for r in replies] == ["invalid"] * 6
    errors = [r.error or "" for r in replies]
    assert "amount: Input should be a valid decimal" in errors[0]
    assert "amount: Input should be greater than 0" in errors[1]
    assert "amount: Decimal input should have no more than 2 decimal places" in errors[2]
    assert "amount: Field required" in errors[3]
    assert "memo: Extra inputs are not permitted" in errors[4]
    assert "Account has no command named 'teleport'" in errors[5]
    assert store.last_version("Account/a") == 1
    for env, reply in zip(bad, replies, strict=True):
        outcome = store.outcome(env.command_id)
        assert outcome is not None
        assert (outcome.status, outcome.version, outcome.error) == ("invalid", 1, reply.error)


def test_valid_arguments_are_coerced_by_the_annotations(store: Store) -> None:
    d = Driver(store, ALL_ENTITIES)
    d.run([command(Account, "a", "open", owner="Ada")])
    reply = d.reply(command(Account, "a", "deposit", amount="12.5"))
    assert (reply.status, reply.result, reply.version) == ("applied", "12.5", 2)
    (event,) = store.read("Account/a", after=1)
    assert event.event.model_dump() == {"amount": Decimal("12.5")}


def test_update_results_are_encoded_by_the_return_annotation(store: Store) -> None:
    d = Driver(store, ALL_ENTITIES, clock=lambda: FIXED)
    d.run([command(Counter, "c", "note", text="hello"), command(Counter, "c", "add", by=2)])
    replies = d.replies(
        [
            command(Counter, "c", "summary"),
            command(Cart, "k", "add_item", sku="tea", quantity=2, unit_price="1.50"),
            command(Cart, "k", "checkout"),
            command(Account, "z", "open", owner="Zed"),
        ]
    )
    summary, added, checkout, opened = replies
    assert summary.result == {"value": 2, "notes": 1, "at": "2030-01-02T03:04:05Z"}
    assert added.result == 1  # -> int: the number of lines
    assert checkout.result == "3.00"  # -> Decimal: JSON string, exact
    assert opened.result is None  # -> None
    stored = store.outcome(summary.command_id)
    assert stored is not None and stored.result == summary.result


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("sneaky_emit", "a query may not emit events"),
        ("sneaky_mutate", "query Counter.sneaky_mutate changed the state"),
        ("sneaky_replace", "a query may not replace the state"),
    ],
)
def test_a_query_that_changes_state_fails(store: Store, name: str, message: str) -> None:
    d = Driver(store, ALL_ENTITIES)
    d.run([command(Counter, "c", "add", by=3)])
    client = _client(store)
    with pytest.raises(QueryMutationError, match=message):
        client.query(Counter, "c", name)
    assert client.query(Counter, "c", "value").result == 3
    assert store.last_version("Counter/c") == 1


def test_queries_take_validated_arguments(store: Store) -> None:
    Driver(store, ALL_ENTITIES).run([command(Counter, "c", "add", by=3)])
    client = _client(store)
    assert client.query(Counter, "c", "plus", n=4).result == 7
    assert client.query(Counter, "c", "plus", {"n": "4"}).result == 7
    with pytest.raises(InvalidArgumentsError, match="n: Input should be a valid integer"):
        client.query(Counter, "c", "plus", n="four")
    with pytest.raises(InvalidArgumentsError, match="n: Field required"):
        client.query(Counter, "c", "plus")
    with pytest.raises(UnknownCommandError, match="Counter has no query named 'add'"):
        client.query(Counter, "c", "add", by=1)
    with pytest.raises(UnknownCommandError, match="Counter has no command named 'value'"):
        client.signal(Counter, "c", "value")


def test_query_results_are_encoded_by_the_return_annotation(store: Store) -> None:
    d = Driver(store, ALL_ENTITIES)
    d.run([command(Cart, "k", "add_item", sku="tea", quantity=2, unit_price="1.50")])
    client = _client(store)
    lines = client.query(Cart, "k", "lines")
    assert lines.result == {"tea": {"quantity": 2, "unit_price": "1.50"}}
    assert lines.version == 1
    assert client.query(Cart, "k", "total").result == "3.00"


def test_emit_outside_a_command_is_refused() -> None:
    spec = EntitySpec.of(Counter)
    entity = spec.new("c")
    from tests.actors_tests.support import Incremented

    with pytest.raises(ActorsError, match=r"emit\(\) is only allowed inside a command handler"):
        entity.emit(Incremented(by=1))
    assert entity.version == 0


def test_handlers_see_a_fixed_clock_and_their_command_id(store: Store) -> None:
    d = Driver(store, ALL_ENTITIES, clock=lambda: FIXED)
    env = command(Counter, "c", "add", by=1, command_id="cmd-1")
    d.run([env])
    (recorded,) = store.read("Counter/c")
    assert recorded.command_id == "cmd-1"
    assert recorded.timestamp == FIXED


# -- an entity whose event changed shape between releases --------------------------------


class LedgerState(BaseModel):
    total: Decimal = Decimal(0)
    currency: str = ""


class CreditedV1(DomainEvent):
    event_type = "tests.Credited"
    cents: int


class CreditedV2(DomainEvent):
    event_type = "tests.Credited"
    schema_version = 2
    amount: Decimal
    currency: str


class LedgerV1(Entity[LedgerState]):
    type_name = "Ledger"

    @update
    def credit(self, cents: int) -> str:
        self.emit(CreditedV1(cents=cents))
        return str(self.state.total)

    @apply
    def _credited(self, event: CreditedV1) -> None:
        self.state.total += Decimal(event.cents) / 100


@upcaster("tests.Credited", from_version=1)
def _cents_to_euros(data: dict[str, Any]) -> dict[str, Any]:
    return {"amount": str(Decimal(data["cents"]) / 100), "currency": "EUR"}


class LedgerV2(Entity[LedgerState]):
    type_name = "Ledger"
    upcasters = (_cents_to_euros,)

    @update
    def credit(self, amount: Decimal, currency: str) -> str:
        self.emit(CreditedV2(amount=amount, currency=currency))
        return str(self.state.total)

    @apply
    def _credited(self, event: CreditedV2) -> None:
        self.state.total += event.amount
        self.state.currency = event.currency


def test_an_entity_reads_events_written_by_its_previous_release(store_url: str) -> None:
    with Store(store_url, registry_of([LedgerV1])) as old:
        replies = Driver(old, [LedgerV1], snapshot_every=100).replies(
            [
                command(LedgerV1, "l", "credit", cents=1050),
                command(LedgerV1, "l", "credit", cents=5),
            ]
        )
        assert [r.result for r in replies] == ["10.5", "10.55"]

    with Store(store_url, registry_of([LedgerV2])) as new:
        d = Driver(new, [LedgerV2])
        reply = d.reply(command(LedgerV2, "l", "credit", amount="1", currency="EUR"))
        assert (reply.status, reply.result, reply.version) == ("applied", "11.55", 3)
        client = Client(InMemoryMailbox(), new, EntityCatalog([LedgerV2]))
        assert client.state(LedgerV2, "l", version=1).state == LedgerState(
            total=Decimal("10.5"), currency="EUR"
        )
        history = client.history(LedgerV2, "l")
        assert [type(e.event) for e in history] == [CreditedV2] * 3
        assert [e.event.model_dump() for e in history][:2] == [
            {"amount": Decimal("10.5"), "currency": "EUR"},
            {"amount": Decimal("0.05"), "currency": "EUR"},
        ]
