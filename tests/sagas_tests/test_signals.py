"""Signals (waited for or buffered), workflow queries, and cancellation."""

from __future__ import annotations

import asyncio

import pytest

from examples.shop import order_saga
from sagas import (
    InvalidWorkflowInputError,
    Refusal,
    UnknownWorkflowError,
    WorkflowClosedError,
    WorkflowNotFoundError,
)
from tests.sagas_tests.conftest import Shop, ShopFactory
from tests.sagas_tests.support import Approval, Vault, approve, move, note

pytestmark = pytest.mark.anyio


async def start_move(shop: Shop, wid: str) -> str:
    await shop.client.update(Vault.put, "src", key="gold", amount=10)
    shop.workflows.start(move, {"source": "src", "target": "dst"}, workflow_id=wid)
    for _ in range(500):
        try:
            if shop.workflows.query(move, wid, "stage") == "waiting":
                return wid
        except WorkflowNotFoundError:
            pass
        await asyncio.sleep(0.01)
    raise AssertionError(f"{wid} never waited for its approval")


async def test_signal_resumes_the_workflow(shop: Shop) -> None:
    wid = await start_move(shop, "mv-1")
    status = shop.workflows.status(move, wid)
    assert (status.status, status.steps_done) == ("running", 1)
    assert status.compensations_pending == ["#1 Vault/src.put"]
    assert shop.vault("src") == 5
    recorded = await shop.workflows.signal(approve, wid, Approval(by="Grace"))
    assert (recorded.status, recorded.address) == ("applied", "workflow:Move/mv-1")
    status = await shop.workflows.wait(move, wid)
    assert (status.status, status.result) == ("completed", {"approved_by": "Grace"})
    assert status.signals_received == 1
    assert (shop.vault("src"), shop.vault("dst")) == (5, 5)
    assert shop.workflows.query(move, wid, "memo_value", key="approved_by") == "Grace"
    assert shop.workflows.query(move, wid, "memo_value", {"key": "nope"}) == "-"


async def test_signals_sent_before_the_wait_are_buffered(shop: Shop) -> None:
    await shop.client.update(Vault.put, "src", key="gold", amount=10)
    shop.workflows.start(move, {"source": "src", "target": "dst"}, workflow_id="mv-2")
    await shop.workflows.signal(note, "mv-2", "unrelated, never waited for")
    await shop.workflows.signal(approve, "mv-2", Approval(by="Early"))
    status = await shop.workflows.wait(move, "mv-2")
    assert (status.status, status.result) == ("completed", {"approved_by": "Early"})
    assert status.signals_received == 2


async def test_signals_are_validated_before_sending(shop: Shop) -> None:
    with pytest.raises(UnknownWorkflowError, match="no signal named 'shout'"):
        move.signal_named("shout")
    with pytest.raises(InvalidWorkflowInputError, match="by"):
        await shop.workflows.signal(approve, "mv-x", {"who": "nobody"})  # type: ignore[arg-type]
    with pytest.raises(InvalidWorkflowInputError, match="invalid input for workflow Move"):
        shop.workflows.start(move, {"source": "src"})


async def test_signal_to_finished_or_unknown_execution_is_refused(shop: Shop) -> None:
    with pytest.raises(WorkflowNotFoundError, match="Move/never-started has not been started"):
        await shop.workflows.signal(approve, "never-started", Approval(by="x"))
    wid = await start_move(shop, "mv-3")
    await shop.workflows.signal(approve, wid, Approval(by="Ada"))
    await shop.workflows.wait(move, wid)
    with pytest.raises(
        WorkflowClosedError, match="mv-3 has already finished \\(completed\\)"
    ) as closed:
        await shop.workflows.signal(approve, wid, Approval(by="late"))
    outcome = shop.client.outcome(closed.value.command_id)
    assert outcome is not None
    assert (outcome.status, outcome.code) == ("rejected", Refusal.FINISHED)


async def test_queries_are_read_only_and_typed(shop: Shop) -> None:
    wid = await start_move(shop, "mv-4")
    with pytest.raises(UnknownWorkflowError, match="no query named 'nope'"):
        shop.workflows.query(move, wid, "nope")
    with pytest.raises(InvalidWorkflowInputError, match="key"):
        shop.workflows.query(move, wid, "memo_value")
    with pytest.raises(WorkflowNotFoundError):
        shop.workflows.query(move, "ghost", "stage")
    assert shop.workflows.query(move, wid, "stage") == "waiting"


async def test_cancel_compensates_what_was_done(shop: Shop) -> None:
    wid = await start_move(shop, "mv-5")
    assert shop.vault("src") == 5
    first = await shop.workflows.cancel(move, wid, reason="customer changed their mind")
    assert first.status == "applied"
    # Cancelling twice is cancelling once: while it compensates, the second is applied and
    # changes nothing; once it has (its undo can finish in the cancel's own batch), the
    # second is refused as too late.
    try:
        again = await shop.workflows.cancel(move, wid, reason="twice")
        assert again.status == "applied"
    except WorkflowClosedError as exc:
        assert "mv-5 has already finished (compensated)" in str(exc)
    status = await shop.workflows.wait(move, wid)
    assert status.status == "compensated"
    assert status.cancelled
    assert status.error == "cancelled: customer changed their mind"
    assert [(s.address, s.command, s.status) for s in status.steps] == [
        ("Vault/src", "take", "applied"),
        ("Vault/src", "put", "applied"),
    ]
    assert (shop.vault("src"), shop.vault("dst")) == (10, 0)
    events = [e.event_type for e in shop.workflows.history(move, wid)]
    assert events.count("wf.CancelRequested") == 1


async def test_cancel_in_flight_waits_for_the_reply_before_compensating(
    make_shop: ShopFactory,
) -> None:
    # Through the mailbox, so a call is in flight between batches (co-located, the whole
    # saga can run in the batch of its start, before the cancel is read).
    shop = make_shop(local_delivery=False)
    await shop.open_account("acct-1", "100.00")
    await shop.restock("apple", 10)
    shop.workflows.start(
        order_saga,
        {
            "account_id": "acct-1",
            "cart_id": "cart-9",
            "lines": [{"sku": "apple", "quantity": 2}],
            "amount": "10.00",
        },
        workflow_id="oc-1",
    )
    # cancel at once: whatever the order had done by then is undone, nothing more
    await shop.workflows.cancel(order_saga, "oc-1")
    status = await shop.workflows.wait(order_saga, "oc-1")
    assert status.status in ("compensated", "completed")
    if status.status == "compensated":
        assert status.cancelled
    else:  # the order finished before the cancellation arrived
        assert status.result is not None
    assert status.compensations_pending == []
    charged = 10 if status.status == "completed" else 0
    assert shop.balance("acct-1") == 100 - charged
    assert shop.available("apple") == 10 - (2 if charged else 0)


async def test_cancel_after_completion_is_refused(shop: Shop) -> None:
    wid = await start_move(shop, "mv-6")
    await shop.workflows.signal(approve, wid, Approval(by="Ada"))
    await shop.workflows.wait(move, wid)
    with pytest.raises(WorkflowClosedError, match="mv-6 has already finished \\(completed\\)"):
        await shop.workflows.cancel(move, wid)
    assert shop.workflows.status(move, wid).status == "completed"
