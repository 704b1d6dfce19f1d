"""Fulfilment: the order saga books a parcel with a shipping carrier, through an activity.

The carrier here is a fake that lives in the worker's process, but it behaves like the
remote API an activity exists for: it is sometimes unreachable (the first attempt of
every :data:`FAIL_EVERY`-th order, chosen from the order id, so a test knows which), it
refuses some addresses for good, and it books a parcel once per idempotency key however
often it is asked. The activity raises on the first two; the saga's retry policy tries
the unreachable carrier again, and an undeliverable address stops the retries at once
(the saga then compensates: refund, release the stock).
"""

from __future__ import annotations

import threading
import zlib
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from sagas import ApplicationError, RetryPolicy, activity, activity_info

FAIL_EVERY = 5
"""The first attempt of one order in this many finds the carrier unreachable."""
UNDELIVERABLE = "nowhere"
"""The address the carrier refuses (a test's way to reach the non-retryable failure)."""


class Shipment(BaseModel):
    order_id: str
    tracking: str
    attempt: int
    """The attempt that booked it (2 for an order whose first attempt failed)."""


def carrier_fails_first(order_id: str) -> bool:
    """Whether the carrier is unreachable for this order's first attempt."""
    return zlib.crc32(order_id.encode()) % FAIL_EVERY == 0


class Carrier:
    """The fake carrier: parcels booked, one per idempotency key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.parcels: dict[str, str] = {}
        self.requests = 0

    def book(self, key: str, order_id: str, address: str) -> str:
        with self._lock:
            self.requests += 1
            if address.strip().lower() == UNDELIVERABLE:
                raise ApplicationError(
                    f"the carrier does not deliver to {address!r}",
                    type="Undeliverable",
                    non_retryable=True,
                )
            # A repeated request (an attempt whose answer was lost) books nothing new.
            return self.parcels.setdefault(key, f"TRK-{zlib.crc32(key.encode()):08X}")


CARRIER = Carrier()


@activity(name="ship_order")
def ship_order(order_id: str, address: str, items: int) -> Shipment:
    """Book the order's parcel; the idempotency key makes a retried booking a no-op."""
    info = activity_info()
    if info.attempt == 1 and carrier_fails_first(order_id):
        raise ConnectionError(f"the carrier's API is unreachable (order {order_id})")
    tracking = CARRIER.book(info.idempotency_key, order_id, address)
    return Shipment(order_id=order_id, tracking=tracking, attempt=info.attempt)


FULFILMENT = ship_order.options(
    retry=RetryPolicy(attempts=5, initial_interval=0.05, backoff=2.0, max_interval=1.0),
    start_to_close=10,
    schedule_to_close=60,
)
"""How the order saga calls it: a short first retry (the carrier is usually back at
once), five attempts at most, a minute in all."""


class Shipped(BaseModel):
    """The carrier's callback once the parcel has left: the order saga's ``shipped`` signal."""

    tracking: Annotated[str, Field(min_length=1, max_length=100)]
    shipped_at: datetime | None = None


class DispatchDesk:
    """The fake dispatch desk: the people asked to chase the carrier about silent parcels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.chasing: dict[str, str] = {}
        """Order id -> tracking number of the parcels the desk was asked to chase."""

    def ask(self, order_id: str, tracking: str) -> None:
        with self._lock:
            self.chasing[order_id] = tracking


DISPATCH = DispatchDesk()


@activity(name="chase_carrier")
def chase_carrier(order_id: str, tracking: str) -> str:
    """Ask the dispatch desk to chase the carrier (a ticket, an e-mail): the escalation of
    an order whose ``shipped`` callback is late. Asking twice is harmless."""
    DISPATCH.ask(order_id, tracking)
    return "dispatch"
