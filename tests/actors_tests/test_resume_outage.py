"""A partition assigned while the broker cannot say its bounds is resumed once it can.

After a broker restarted empty, the commands topic is missing until someone puts it
back; reading a newly assigned partition's bounds then fails. The worker used to die of
it; now it waits out the outage as it does the store's.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from actors import Host, InMemoryMailbox
from actors.errors import MailboxUnavailableError
from actors.mailbox.memory import MemoryConsumer
from examples.shop import ENTITIES, Account

pytestmark = pytest.mark.anyio


async def test_the_worker_retries_reading_bounds_the_broker_cannot_give_yet(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = 3
    real = MemoryConsumer.offsets

    def offsets(self: MemoryConsumer, partition: int) -> tuple[int, int]:
        nonlocal failures
        if failures > 0:
            failures -= 1
            raise MailboxUnavailableError(f"cannot read the bounds of partition {partition}")
        return real(self, partition)

    monkeypatch.setattr(MemoryConsumer, "offsets", offsets)
    async with Host(sqlite_url, ENTITIES, mailbox=InMemoryMailbox(partitions=2)) as host:
        await host.client.update(Account.open.options(timeout=30), "a", owner="x")
        await host.client.update(Account.deposit.options(timeout=30), "a", amount=5)
        assert failures == 0  # every failure was met, and the worker went on
        assert host.worker.owned == [0, 1]
        assert host.client.state(Account, "a").state.balance == Decimal(5)
