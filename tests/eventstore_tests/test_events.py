"""Typed events, their registry, and upcasting old stored events to the code's version.

The upcasting tests write events with one version of an event class into a real store
(SQLite and PostgreSQL), then open the same store with code where the class has moved on.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from eventstore import (
    Commit,
    DomainEvent,
    EventDecodeError,
    EventRegistry,
    RecordedEvent,
    RegistryError,
    Store,
    UnknownEventTypeError,
    upcaster,
)

# -- one event type in three versions of the code ----------------------------------------


class DepositedV1(DomainEvent):
    """As first released: an amount in cents, no currency."""

    event_type = "tests.Deposited"
    cents: int


class DepositedV2(DomainEvent):
    """Amounts became decimals with a currency."""

    event_type = "tests.Deposited"
    schema_version = 2
    amount: Decimal
    currency: str


class DepositedV3(DomainEvent):
    """A memo was added."""

    event_type = "tests.Deposited"
    schema_version = 3
    amount: Decimal
    currency: str
    memo: str


class Opened(DomainEvent):
    event_type = "tests.Opened"
    owner: str


@upcaster(DepositedV2, from_version=1)
def cents_to_amount(data: dict[str, Any]) -> dict[str, Any]:
    return {"amount": str(Decimal(data["cents"]) / 100), "currency": "EUR"}


@upcaster("tests.Deposited", from_version=2)
def add_memo(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "memo": ""}


# -- DomainEvent and EventRegistry ----------------------------------------------------------


def test_the_event_type_is_the_declared_name() -> None:
    assert Opened.event_type == "tests.Opened"

    class Closed(DomainEvent):
        event_type = "Closed"

    assert (Closed.event_type, Closed.schema_version) == ("Closed", 1)


def test_an_event_without_a_declared_type_name_is_refused_with_what_to_write() -> None:
    """A name derived from the class would change when the class is renamed, orphaning
    every stored event of it; so the registry asks for a deliberate one."""

    class Nameless(DomainEvent):
        amount: int

    class Inherited(Opened):  # a subclass must name itself too, not reuse its parent's
        pass

    with pytest.raises(RegistryError, match=r'Nameless has no event_type.*event_type = "Nameless"'):
        EventRegistry([Nameless])
    with pytest.raises(RegistryError, match="Inherited has no event_type of its own"):
        EventRegistry([Inherited])


def test_events_are_frozen_and_strict() -> None:
    event = Opened(owner="Ada")
    with pytest.raises(ValidationError):
        event.owner = "Bob"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Opened(owner="Ada", admin=True)  # type: ignore[call-arg]


@pytest.mark.parametrize("version", [0, -1, "2"])
def test_schema_version_must_be_a_positive_int(version: Any) -> None:
    with pytest.raises(RegistryError, match="schema_version must be a positive int"):
        type("Bad", (DomainEvent,), {"schema_version": version, "__module__": __name__})


def test_two_classes_may_not_share_a_type_name() -> None:
    with pytest.raises(RegistryError, match=r"'tests.Deposited' is used by both DepositedV1"):
        EventRegistry([DepositedV1, DepositedV2])


def test_only_domain_events_register() -> None:
    with pytest.raises(RegistryError, match="is not a DomainEvent subclass"):
        EventRegistry([dict])  # type: ignore[list-item]


def test_registering_the_same_class_twice_is_harmless() -> None:
    registry = EventRegistry([Opened, Opened])
    registry.merge(EventRegistry([Opened]))
    assert registry.event_types == {"tests.Opened": Opened}


def test_two_upcasters_for_one_step() -> None:
    other = upcaster(DepositedV2, from_version=1)(lambda d: d)
    with pytest.raises(RegistryError, match=r"two upcasters for 'tests.Deposited' from version 1"):
        EventRegistry([DepositedV2], [cents_to_amount, other])


def test_a_missing_upcaster_is_found_at_registration() -> None:
    with pytest.raises(
        RegistryError,
        match=r"DepositedV3 is at schema version 3 but no upcaster from version 2 is registered",
    ):
        EventRegistry([DepositedV3], [cents_to_amount]).validate()
    EventRegistry([DepositedV3], [cents_to_amount, add_memo]).validate()


def test_decode_runs_the_chain_of_upcasters() -> None:
    registry = EventRegistry([DepositedV3], [cents_to_amount, add_memo])
    assert registry.decode("tests.Deposited", 1, {"cents": 1250}) == DepositedV3(
        amount=Decimal("12.5"), currency="EUR", memo=""
    )
    assert registry.decode("tests.Deposited", 2, {"amount": "1", "currency": "USD"}) == DepositedV3(
        amount=Decimal("1"), currency="USD", memo=""
    )


def test_decode_errors_are_clear() -> None:
    registry = EventRegistry([DepositedV2], [cents_to_amount])
    with pytest.raises(
        UnknownEventTypeError, match=r"no event class is registered under the name 'x'"
    ):
        registry.decode("x", 1, {})
    with pytest.raises(EventDecodeError, match=r"newer than the code's version 2"):
        registry.decode("tests.Deposited", 3, {})
    with pytest.raises(EventDecodeError, match=r"does not fit DepositedV2"):
        registry.decode("tests.Deposited", 2, {"amount": "many", "currency": "EUR"})
    unchecked = EventRegistry([DepositedV3], [cents_to_amount])  # never validated
    with pytest.raises(EventDecodeError, match=r"at schema version 2 and no upcaster to version 3"):
        unchecked.decode("tests.Deposited", 1, {"cents": 1})


# -- upcasting through a real store -------------------------------------------------------


def _write(url: str, registry: EventRegistry, stream: str, events: list[DomainEvent]) -> None:
    with Store(url, registry) as store:
        start = store.last_version(stream)
        store.commit(
            Commit(
                events=[RecordedEvent(stream, start + i, e) for i, e in enumerate(events, start=1)]
            )
        )


def test_v1_events_are_read_by_v2_code(store_url: str) -> None:
    v1 = EventRegistry([Opened, DepositedV1])
    _write(url := store_url, v1, "acct-1", [Opened(owner="Ada"), DepositedV1(cents=1999)])

    v2 = EventRegistry([Opened, DepositedV2], [cents_to_amount])
    v2.validate()
    with Store(url, v2) as store:
        events = [r.event for r in store.load("acct-1").events]
        assert events == [Opened(owner="Ada"), DepositedV2(amount=Decimal("19.99"), currency="EUR")]
        assert type(events[1]) is DepositedV2
        # New events are written at version 2 and read back without upcasting.
        store.commit(
            Commit(events=[RecordedEvent("acct-1", 3, DepositedV2(amount=1, currency="USD"))])
        )
        assert [r.event for r in store.read("acct-1", after=1)] == [
            DepositedV2(amount=Decimal("19.99"), currency="EUR"),
            DepositedV2(amount=Decimal("1"), currency="USD"),
        ]
        # The notification log decodes through the same registry.
        assert [n.event for n in store.notifications(0, 10)][1:] == [
            DepositedV2(amount=Decimal("19.99"), currency="EUR"),
            DepositedV2(amount=Decimal("1"), currency="USD"),
        ]

    v3 = EventRegistry([Opened, DepositedV3], [cents_to_amount, add_memo])
    with Store(url, v3) as store:
        assert [r.event for r in store.read("acct-1", after=1)] == [
            DepositedV3(amount=Decimal("19.99"), currency="EUR", memo=""),
            DepositedV3(amount=Decimal("1"), currency="USD", memo=""),
        ]


def test_events_newer_than_the_code_fail_clearly(store_url: str) -> None:
    _write(
        store_url,
        EventRegistry([DepositedV2], [cents_to_amount]),
        "acct-1",
        [DepositedV2(amount=Decimal("5"), currency="EUR")],
    )
    newer = (
        r"stored 'tests.Deposited' is at schema version 2, newer than the code's version 1; "
        r"deploy the newer code"
    )
    with (
        Store(store_url, EventRegistry([DepositedV1])) as old_code,
        pytest.raises(EventDecodeError, match=newer),
    ):
        old_code.load("acct-1")


def test_unknown_stored_event_types_fail_clearly(store_url: str) -> None:
    _write(store_url, EventRegistry([Opened]), "acct-1", [Opened(owner="Ada")])
    with (
        Store(store_url, EventRegistry([DepositedV1])) as store,
        pytest.raises(UnknownEventTypeError, match=r"'tests\.Opened'"),
    ):
        store.load("acct-1")
