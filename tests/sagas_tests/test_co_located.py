"""A saga whose coordinator and entities live on one worker: calls and replies stay in it.

The worker hands each call to the entity, and each reply back to the coordinator, to its
own next batch instead of the mailbox; only what callers send from outside (the start,
the setup updates) is in the log. With co-located delivery off, every call and reply is.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from actors import Envelope, InMemoryMailbox
from examples.shop import order_saga
from tests.sagas_tests.conftest import ShopFactory
from tests.sagas_tests.test_orders import order, stock_up

pytestmark = pytest.mark.anyio


def _logged(mailbox: InMemoryMailbox) -> list[Envelope]:
    return [Envelope.decode(raw) for p in range(mailbox.partitions) for raw in mailbox.raw_log(p)]


@pytest.mark.parametrize("co_located", [True, False])
async def test_an_order_saga_on_one_worker(make_shop: ShopFactory, co_located: bool) -> None:
    mailbox = InMemoryMailbox(partitions=4)
    shop = make_shop(mailbox=mailbox, local_delivery=co_located)
    await stock_up(shop)
    wid = shop.workflows.start(order_saga, order(apple=3, pear=1), workflow_id="o-1")
    status = await shop.workflows.wait(order_saga, wid)
    assert status.status == "completed"
    assert shop.balance("acct-1") == Decimal("70.00")

    logged = _logged(mailbox)
    calls = [e for e in logged if e.reply_to == "actor:workflow:Order/o-1"]
    replies = [e for e in logged if e.kind == "reply"]
    local = shop.host.worker.stats.local_messages
    if co_located:
        assert calls == [] and replies == []
        assert local == 8  # four calls, four replies
        # each handled in the batch that sent it: the saga is one commit after its start
        assert shop.host.worker.stats.followed == 8
    else:
        assert sorted((e.address, e.name) for e in calls) == [
            ("Account/acct-1", "withdraw"),
            ("Cart/cart-1", "checkout"),
            ("InventoryItem/apple", "reserve"),
            ("InventoryItem/pear", "reserve"),
        ]
        assert len(replies) == 4
        assert local == 0
    assert [e.name for e in logged if e.address == "workflow:Order/o-1"] == (
        ["start"] if co_located else ["start", "reply", "reply", "reply", "reply"]
    )


async def test_a_saga_batch_that_fails_to_commit_is_done_again_once(make_shop: ShopFactory) -> None:
    """The hops handled in the batch that sent them are part of its commit: when it fails,
    they are not kept or sent anywhere; the batch is read again and done once."""
    from eventstore import Commit, StoreUnavailableError

    shop = make_shop(mailbox=InMemoryMailbox(partitions=4), local_delivery=True)
    await stock_up(shop)
    store = shop.host.store
    real_commit = store.commit
    failed: list[Commit] = []

    def fail_the_first_chain(commit: Commit) -> list[int]:
        if not failed and any(e.originator_id.startswith("Account/") for e in commit.events):
            failed.append(commit)  # the saga got as far as the payment in this batch
            raise StoreUnavailableError("committing a batch: connection lost")
        return real_commit(commit)

    store.commit = fail_the_first_chain  # type: ignore[method-assign]
    wid = shop.workflows.start(order_saga, order(apple=3, pear=1), workflow_id="o-2")
    status = await shop.workflows.wait(order_saga, wid)
    assert failed, "no batch carried the saga's hops to the payment"
    assert shop.host.worker.stats.store_failures == 1
    assert status.status == "completed"
    assert shop.balance("acct-1") == Decimal("70.00")  # charged once
    assert shop.available("apple") == 7 and shop.available("pear") == 3
    history = [e.event_type for e in shop.workflows.history(order_saga, wid)]
    assert history.count("wf.Started") == 1
    assert history.count("wf.Completed") == 1
