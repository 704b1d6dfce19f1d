"""A read model fed by the event stream: stock levels and the low-stock report.

``LowStockReport`` is a projection (see ``eventstore/projections.py``): it keeps one row
per SKU (on hand, reserved) in the store's database, changed by the inventory events on
the stream, and answers "which SKUs have fewer than N available?" without loading a
single entity. Run it with::

    runner = ProjectionRunner(store, LowStockReport(), kafka, namespace="shop")
    runner.start()
    ...
    report.low_stock(ReadModelDB(store))
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from eventstore import DomainEvent
from eventstore.stream.projections import ReadModelDB, ReadModelTxn
from eventstore.stream.subscriptions import StreamMessage
from examples.shop.inventory import (
    ReservationCommitted,
    ReservationReleased,
    Restocked,
    StockReserved,
)


class StockLevel(BaseModel):
    """One SKU in the report."""

    sku: str
    on_hand: int
    reserved: int
    available: int


class LowStockReport:
    """Stock per SKU, and the SKUs whose available stock is below a threshold."""

    name = "shop-low-stock"
    event_types: tuple[type[DomainEvent], ...] = (
        Restocked,
        StockReserved,
        ReservationReleased,
        ReservationCommitted,
    )

    def __init__(self, threshold: int = 5) -> None:
        self.threshold = threshold

    def create(self, db: ReadModelTxn) -> None:
        db.execute(
            "CREATE TABLE IF NOT EXISTS shop_stock (sku text PRIMARY KEY, "
            "on_hand bigint NOT NULL, reserved bigint NOT NULL)"
        )

    def apply(self, db: ReadModelTxn, message: StreamMessage[Any]) -> None:
        event = message.event
        on_hand = reserved = 0
        if isinstance(event, Restocked):
            on_hand = event.quantity
        elif isinstance(event, StockReserved):
            reserved = event.quantity
        elif isinstance(event, ReservationReleased):
            reserved = -event.quantity
        elif isinstance(event, ReservationCommitted):
            on_hand, reserved = -event.quantity, -event.quantity
        db.execute(
            "INSERT INTO shop_stock (sku, on_hand, reserved) VALUES (%(sku)s, %(h)s, %(r)s) "
            "ON CONFLICT (sku) DO UPDATE SET on_hand = shop_stock.on_hand + excluded.on_hand, "
            "reserved = shop_stock.reserved + excluded.reserved",
            {"sku": message.entity_id, "h": on_hand, "r": reserved},
        )

    def levels(self, db: ReadModelDB) -> list[StockLevel]:
        """Every SKU's stock, by SKU."""
        return self._select(db, "SELECT sku, on_hand, reserved FROM shop_stock ORDER BY sku", {})

    def low_stock(self, db: ReadModelDB, threshold: int | None = None) -> list[StockLevel]:
        """SKUs whose available stock (on hand minus reserved) is below the threshold."""
        return self._select(
            db,
            "SELECT sku, on_hand, reserved FROM shop_stock "
            "WHERE on_hand - reserved < %(t)s ORDER BY on_hand - reserved, sku",
            {"t": self.threshold if threshold is None else threshold},
        )

    def _select(self, db: ReadModelDB, statement: str, params: dict[str, Any]) -> list[StockLevel]:
        with db.transaction(commit=False) as txn:
            txn.execute(statement, params)
            rows = txn.fetchall()
        return [
            StockLevel(
                sku=row["sku"],
                on_hand=int(row["on_hand"]),
                reserved=int(row["reserved"]),
                available=int(row["on_hand"]) - int(row["reserved"]),
            )
            for row in rows
        ]
