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
    Client,
    CommandContext,
    Entity,
    EntityCatalog,
    EntitySpec,
    InMemoryMailbox,
    InvalidArgumentsError,
    Rejected,
    UnknownCommandError,
    apply,
    command,
)
from eventstore import DomainEvent, Store, upcaster
from examples.shop import Account, Cart
from examples.shop.carts import CartLine
from tests.actors_tests.conftest import ALL_ENTITIES
from tests.actors_tests.support import Counter, Driver, message, registry_of

FIXED = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def _client(store: Store) -> Client:
    return Client(InMemoryMailbox(), store, EntityCatalog(ALL_ENTITIES))


def test_arguments_are_validated_at_the_worker_from_the_signature(store: Store) -> None:
    """An envelope that skipped the client's checks is refused with pydantic's reasons."""
    d = Driver(store, ALL_ENTITIES)
    d.run([message(Account, "a", "open", owner="Ada")])
    bad = [
        message(Account, "a", "deposit", amount="lots"),
        message(Account, "a", "deposit", amount="-5"),
        message(Account, "a", "deposit", amount="1.001"),
        message(Account, "a", "deposit"),
        message(Account, "a", "deposit", amount="1", memo="x"),
        message(Account, "a", "teleport"),
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
    d.run([message(Account, "a", "open", owner="Ada")])
    reply = d.reply(message(Account, "a", "deposit", amount="12.5"))
    assert (reply.status, reply.result, reply.version) == ("applied", "12.5", 2)
    (event,) = store.read("Account/a", after=1)
    assert event.event.model_dump() == {"amount": Decimal("12.5")}


def test_update_results_are_encoded_by_the_return_annotation(store: Store) -> None:
    d = Driver(store, ALL_ENTITIES, clock=lambda: FIXED)
    d.run([message(Counter, "c", "note", text="hello"), message(Counter, "c", "add", by=2)])
    replies = d.replies(
        [
            message(Counter, "c", "summary"),
            message(Cart, "k", "add_item", sku="tea", quantity=2, unit_price="1.50"),
            message(Cart, "k", "checkout"),
            message(Account, "z", "open", owner="Zed"),
        ]
    )
    summary, added, checkout, opened = replies
    assert summary.result == {"value": 2, "notes": 1, "at": "2030-01-02T03:04:05Z"}
    assert added.result == 1  # -> int: the number of lines
    assert checkout.result == "3.00"  # -> Decimal: JSON string, exact
    assert opened.result is None  # -> None
    stored = store.outcome(summary.command_id)
    assert stored is not None and stored.result == summary.result


@pytest.mark.parametrize("query", [Counter.sneaky_mutate, Counter.sneaky_replace])
def test_a_query_sees_a_copy_so_changing_it_changes_nothing(store: Store, query: Any) -> None:
    d = Driver(store, ALL_ENTITIES)
    d.run([message(Counter, "c", "add", by=3)])
    client = _client(store)
    client.query(query, "c")
    assert client.query(Counter.value, "c").result == 3
    spec = EntitySpec.of(Counter)
    cached = spec.new("c")
    spec.run_query(cached, spec.compiled(query), spec.compiled(query).parse({}))
    assert cached.state == spec.new("c").state  # the entity itself is untouched
    assert store.last_version("Counter/c") == 1


def test_queries_take_validated_arguments(store: Store) -> None:
    Driver(store, ALL_ENTITIES).run([message(Counter, "c", "add", by=3)])
    client = _client(store)
    assert client.query(Counter.plus, "c", n=4).result == 7
    assert client.query(Counter.plus, "c", 4).result == 7  # positional, by declaration order
    with pytest.raises(InvalidArgumentsError, match="n: Input should be a valid integer"):
        client.query(Counter.plus, "c", n="four")
    with pytest.raises(InvalidArgumentsError, match="n: Field required"):
        client.query(Counter.plus, "c")
    with pytest.raises(UnknownCommandError, match="is a command, not a query"):
        client.query(Counter.add, "c", by=1)  # type: ignore[arg-type]
    with pytest.raises(UnknownCommandError, match="is a query, not a command"):
        client.signal(Counter.value, "c")  # type: ignore[arg-type]


def test_query_results_are_encoded_by_the_return_annotation(store: Store) -> None:
    d = Driver(store, ALL_ENTITIES)
    d.run([message(Cart, "k", "add_item", sku="tea", quantity=2, unit_price="1.50")])
    client = _client(store)
    lines = client.query(Cart.lines, "k")
    assert lines.result == {"tea": CartLine(quantity=2, unit_price=Decimal("1.50"))}
    assert lines.version == 1
    total = client.query(Cart.total, "k").result
    assert (total, type(total)) == (Decimal("3.00"), Decimal)


def test_a_command_runs_on_a_working_copy_that_a_refusal_drops() -> None:
    spec = EntitySpec.of(Counter)
    entity = spec.new("c")
    add = spec.compiled(Counter.add_then_reject)
    with pytest.raises(Rejected):
        spec.run_command(entity, add, add.parse({"by": 2}), command_id="x", now=FIXED)
    assert (entity.state.value, entity.version) == (0, 0)
    ok = spec.compiled(Counter.add)
    working, ctx, value = spec.run_command(
        entity, ok, ok.parse({"by": 2}), command_id="y", now=FIXED
    )
    assert (value, working.version, len(ctx.events)) == (2, 1, 1)
    assert (entity.state.value, entity.version) == (0, 0)  # the copy changed, not the entity


def test_handlers_see_a_fixed_clock_and_their_command_id(store: Store) -> None:
    d = Driver(store, ALL_ENTITIES, clock=lambda: FIXED)
    env = message(Counter, "c", "add", by=1, command_id="cmd-1")
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

    @command
    def credit(self, ctx: CommandContext, cents: int) -> str:
        ctx.emit(CreditedV1(cents=cents))
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

    @command
    def credit(self, ctx: CommandContext, amount: Decimal, currency: str) -> str:
        ctx.emit(CreditedV2(amount=amount, currency=currency))
        return str(self.state.total)

    @apply
    def _credited(self, event: CreditedV2) -> None:
        self.state.total += event.amount
        self.state.currency = event.currency


def test_an_entity_reads_events_written_by_its_previous_release(store_url: str) -> None:
    with Store(store_url, registry_of([LedgerV1])) as old:
        replies = Driver(old, [LedgerV1], snapshot_every=100).replies(
            [
                message(LedgerV1, "l", "credit", cents=1050),
                message(LedgerV1, "l", "credit", cents=5),
            ]
        )
        assert [r.result for r in replies] == ["10.5", "10.55"]

    with Store(store_url, registry_of([LedgerV2])) as new:
        d = Driver(new, [LedgerV2])
        reply = d.reply(message(LedgerV2, "l", "credit", amount="1", currency="EUR"))
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
