"""The order-saga workload of the crash tests: plan, seed, start, watch and reconcile.

200 sagas over 7 accounts and 5 SKUs; every 10th cart is empty, so every 10th saga is
refused at its last step and must undo its reservation and its charge. ``reconcile``
checks that every saga ended as planned and that no command took effect twice.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from actors import Client, EntityCatalog
from actors.mailbox.kafka import KafkaMailbox
from eventstore import EventRegistry, Store
from eventstore.kafka.io import KafkaSettings
from examples.shop import ENTITIES, Account, Cart, InventoryItem, order_saga
from sagas import HISTORY_EVENTS, Workflow, WorkflowClient
from tests.integration.processes import WorkerProcess, count_rows

PARTITIONS = 8
SAGAS = 200
ACCOUNTS = 7
SKUS = 5
PRICE = Decimal("2.50")
DOMAIN = "tests.integration.saga_domain"


def plan(i: int) -> dict[str, Any]:
    """Saga ``i``: its account, SKU, quantity and amount; every 10th cart stays empty."""
    quantity = 1 + i % 3
    return {
        "account_id": f"acct-{i % ACCOUNTS}",
        "cart_id": f"cart-{i}",
        "lines": [{"sku": f"sku-{i % SKUS}", "quantity": quantity}],
        "amount": str(PRICE * quantity),
    }


def refused(i: int) -> bool:
    return i % 10 == 9


@dataclass
class Shop:
    mailbox: KafkaMailbox
    store: Store
    client: Client
    workflows: WorkflowClient
    started: set[int] = field(default_factory=set)

    def close(self) -> None:
        self.client.close()
        self.mailbox.close()
        self.store.close()


def open_shop(
    pg_url: str, bootstrap: str, namespace: str, workflows: Sequence[Workflow[Any, Any]] = ()
) -> Shop:
    mailbox = KafkaMailbox(KafkaSettings(bootstrap), namespace=namespace, partitions=PARTITIONS)
    catalog = EntityCatalog(ENTITIES)
    registry = EventRegistry(HISTORY_EVENTS)
    for spec in catalog:
        registry.merge(spec.registry)
    store = Store(pg_url, registry)
    client = Client(mailbox, store, catalog, default_timeout=60)
    client_of = WorkflowClient(mailbox, store, [order_saga, *workflows], sender=client.sender)
    return Shop(mailbox, store, client, client_of)


def seed(shop: Shop) -> None:
    async def go() -> None:
        c = shop.client
        await asyncio.gather(
            *(c.update(Account.open, f"acct-{a}", owner="o") for a in range(ACCOUNTS)),
            *(c.update(InventoryItem.restock, f"sku-{s}", quantity=10_000) for s in range(SKUS)),
        )
        await asyncio.gather(
            *(
                c.update(Account.deposit, f"acct-{a}", amount=Decimal(10_000))
                for a in range(ACCOUNTS)
            )
        )
        for first in range(0, SAGAS, 50):
            await asyncio.gather(
                *(
                    c.update(
                        Cart.add_item,
                        f"cart-{i}",
                        sku=plan(i)["lines"][0]["sku"],
                        quantity=plan(i)["lines"][0]["quantity"],
                        unit_price=PRICE,
                    )
                    for i in range(first, min(first + 50, SAGAS))
                    if not refused(i)
                )
            )

    asyncio.run(go())


def start_all(shop: Shop, rate: float, stop: threading.Event) -> None:
    """Start every saga at about ``rate`` per second, retrying what the broker refuses."""
    for i in range(SAGAS):
        while not stop.is_set():
            try:
                shop.workflows.start(order_saga, plan(i), workflow_id=f"order-{i}")
                shop.started.add(i)
                break
            except Exception:
                time.sleep(0.5)  # unacknowledged: the caller sends the same start again
        time.sleep(1 / rate)


def statuses(shop: Shop) -> Counter[str]:
    rows = shop.workflows.executions(order_saga, limit=10_000)
    return Counter(r.status for r in rows)


def finished(shop: Shop) -> bool:
    counts = statuses(shop)
    return counts["completed"] + counts["compensated"] + counts["failed"] >= SAGAS


def reconcile(shop: Shop, pg_url: str) -> None:
    rows = {r.workflow_id: r.status for r in shop.workflows.executions(order_saga, limit=10_000)}
    expected = {f"order-{i}": "compensated" if refused(i) else "completed" for i in range(SAGAS)}
    assert rows == expected
    charged: dict[str, Decimal] = {f"acct-{a}": Decimal(0) for a in range(ACCOUNTS)}
    held: dict[str, int] = {f"sku-{s}": 0 for s in range(SKUS)}
    for i in range(SAGAS):
        if refused(i):
            continue
        p = plan(i)
        charged[p["account_id"]] += Decimal(p["amount"])
        held[p["lines"][0]["sku"]] += p["lines"][0]["quantity"]
    for account, spent in charged.items():
        balance = Decimal(shop.client.query(Account.balance, account).result)
        assert balance == Decimal(10_000) - spent, account
    for sku, quantity in held.items():
        assert shop.client.query(InventoryItem.available, sku).result == 10_000 - quantity
    # no command took effect twice: one withdrawal and one reservation per saga, one refund
    # and one release per refused saga, one checkout per completed one
    compensated = sum(1 for i in range(SAGAS) if refused(i))

    def events(topic: str) -> int:
        return count_rows(pg_url, "entityflow_events", f"WHERE topic = '{topic}'")

    assert events("Withdrawn") == SAGAS
    assert events("Deposited") == ACCOUNTS + compensated
    assert events("StockReserved") == SAGAS
    assert events("ReservationReleased") == compensated
    assert events("CheckedOut") == SAGAS - compensated
    assert events("wf.Started") == SAGAS
    assert events("wf.Parked") == 0
    sample = shop.workflows.status(order_saga, "order-9")
    assert [(s.command, s.status) for s in sample.steps] == [
        ("reserve", "applied"),
        ("withdraw", "applied"),
        ("checkout", "rejected"),
        ("deposit", "applied"),
        ("release", "applied"),
    ]


def spawn(
    workers: list[WorkerProcess],
    pg_url: str,
    bootstrap: str,
    namespace: str,
    domain: str = DOMAIN,
    worker_id: str | None = None,
) -> WorkerProcess:
    """A worker process of the saga domain; ``worker_id`` makes it a static group member."""
    extra = {"ENTITYFLOW_WORKER_ID": worker_id} if worker_id else None
    w = WorkerProcess(
        pg_url, bootstrap, namespace, domain=domain, partitions=PARTITIONS, extra_env=extra
    )
    workers.append(w)
    return w
