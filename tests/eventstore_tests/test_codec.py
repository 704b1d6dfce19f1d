"""The stored form of events and snapshots: JSON with a stable type name, never a path."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from eventsourcing.persistence import StoredEvent

from eventstore import (
    DomainEvent,
    EventDecodeError,
    EventRegistry,
    RecordedEvent,
    Snapshot,
)
from eventstore.sql.codec import EventCodec

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class Priced(DomainEvent):
    event_type = "shop.Priced"
    schema_version = 2
    sku: str
    price: Decimal


CODEC = EventCodec(
    EventRegistry([Priced], [])  # version 1 is never read here
)


def test_events_are_stored_as_json_under_their_type_name() -> None:
    recorded = RecordedEvent("Item/tea", 3, Priced(sku="tea", price=Decimal("1.10")), T0, "c9")
    stored = CODEC.to_stored_event(recorded)
    assert (stored.originator_id, stored.originator_version, stored.topic) == (
        "Item/tea",
        3,
        "shop.Priced",
    )
    assert json.loads(stored.state) == {
        "m": {"v": 2, "t": "2030-01-01T12:00:00+00:00", "c": "c9"},
        "d": {"sku": "tea", "price": "1.10"},
    }
    assert CODEC.to_domain_event(stored) == recorded


def test_snapshots_round_trip() -> None:
    snapshot = Snapshot("Item/tea", 100, "Item@1", {"on_hand": 5, "price": "1.10"}, T0)
    stored = CODEC.to_stored_event(snapshot)
    assert stored.topic == "snapshot:Item@1"
    assert CODEC.to_domain_event(stored) == snapshot


def test_only_entityflow_records_are_stored() -> None:
    with pytest.raises(TypeError, match="cannot store Priced"):
        CODEC.to_stored_event(Priced(sku="tea", price=Decimal(1)))


@pytest.mark.parametrize(
    "state", [b"not json", b"[]", b"{}", b'{"d": {}}', b'{"m": {}, "d": {}}', b'{"m": 1, "d": {}}']
)
def test_foreign_rows_fail_clearly(state: bytes) -> None:
    with pytest.raises(EventDecodeError, match="stored event s@1 is not entityflow JSON"):
        CODEC.to_domain_event(StoredEvent("s", 1, "shop.Priced", state))
