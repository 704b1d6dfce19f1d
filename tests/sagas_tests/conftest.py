"""Fixtures of the saga tests: hosts running the shop and the test workflows in-process.

``make_shop`` builds a :class:`Shop` (a Host with the workflow kinds, plus a workflow
client) on the test's store URL (SQLite and PostgreSQL). A test may build several on one
mailbox to restart a worker; every one is stopped at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from actors import EntityNotFoundError, Host, InMemoryMailbox, Mailbox, system_clock
from actors.runtime import Clock
from examples.shop import ENTITIES, WORKFLOWS, Account, Cart, InventoryItem
from sagas import Workflow, WorkflowClient, WorkflowKind
from tests.sagas_tests.support import TEST_WORKFLOWS, LossyMailbox, Vault

ALL_ENTITIES = (*ENTITIES, Vault)
ALL_WORKFLOWS: tuple[Workflow[Any, Any], ...] = (*WORKFLOWS, *TEST_WORKFLOWS)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Shop:
    host: Host
    workflows: WorkflowClient
    kinds: dict[str, WorkflowKind]
    stopped: bool = False

    @property
    def client(self) -> Any:
        return self.host.client

    async def open_account(self, account_id: str, balance: str) -> None:
        await self.client.update(Account.open, account_id, owner="Ada")
        if Decimal(balance) > 0:
            await self.client.update(Account.deposit, account_id, amount=Decimal(balance))

    async def restock(self, sku: str, quantity: int) -> None:
        await self.client.update(InventoryItem.restock, sku, quantity=quantity)

    async def fill_cart(self, cart_id: str, sku: str, quantity: int, price: str) -> None:
        await self.client.update(
            Cart.add_item, cart_id, sku=sku, quantity=quantity, unit_price=Decimal(price)
        )

    def balance(self, account_id: str) -> Decimal:
        return Decimal(self.client.query(Account.balance, account_id).result)

    def available(self, sku: str) -> int:
        return int(self.client.query(InventoryItem.available, sku).result)

    def vault(self, vault_id: str, key: str = "gold") -> int:
        """What a vault holds (0 for a vault that never saw an event)."""
        try:
            return int(self.client.query(Vault.count, vault_id, key=key).result)
        except EntityNotFoundError:
            return 0

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.host.stop()


ShopFactory = Callable[..., Shop]


@pytest.fixture
def make_shop(store_url: str) -> Iterator[ShopFactory]:
    running: list[Shop] = []

    def make(
        *,
        mailbox: Mailbox | None = None,
        workflows: Sequence[Workflow[Any, Any]] = ALL_WORKFLOWS,
        resend_after: float = 30.0,
        tick_interval: float = 0.05,
        cache_size: int = 10_000,
        local_delivery: bool | None = None,
        clock: Clock = system_clock,
    ) -> Shop:
        kinds = {w.name: WorkflowKind(w, resend_after=resend_after) for w in workflows}
        host = Host(
            store_url,
            ALL_ENTITIES,
            kinds=list(kinds.values()),
            mailbox=mailbox if mailbox is not None else InMemoryMailbox(),
            cache_size=cache_size,
            clock=clock,
            # A LossyMailbox loses messages on their way through the broker: keep them on
            # that way, unless a test says otherwise.
            local_delivery=(
                not isinstance(mailbox, LossyMailbox) if local_delivery is None else local_delivery
            ),
        )
        host.worker.tick_interval = tick_interval
        host.start()
        client = WorkflowClient(host.mailbox, host.store, workflows, sender=host.client.sender)
        shop = Shop(host, client, kinds)
        running.append(shop)
        return shop

    yield make
    for shop in running:
        shop.stop()


@pytest.fixture
def shop(make_shop: ShopFactory) -> Shop:
    return make_shop()
