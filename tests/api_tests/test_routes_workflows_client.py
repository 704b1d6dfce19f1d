"""The typed HTTP client's workflow calls against a real server: typed results and errors."""

from __future__ import annotations

from decimal import Decimal

import pytest

from api.client import EntityflowClient, InvalidError, NotFoundError, RejectedError
from examples.shop import Account, Cart, InventoryItem, OrderResult, order_saga
from sagas import InvalidWorkflowInputError
from tests.api_tests.conftest import Stack
from tests.api_tests.support import Approval, TransferResult, approve, transfer


def test_order_saga_through_the_typed_client(stack: Stack) -> None:
    account, sku, cart = stack.new_id("acct"), stack.new_id("sku"), stack.new_id("cart")
    with EntityflowClient(stack.url) as ef:
        ef.update(Account.open, account, owner="Ada")
        ef.update(Account.deposit, account, amount=Decimal(50))
        ef.update(InventoryItem.restock, sku, quantity=5)
        ef.update(Cart.add_item, cart, sku=sku, quantity=1, unit_price=Decimal(20))
        order = {"account_id": account, "cart_id": cart, "lines": [{"sku": sku, "quantity": 1}]}
        wid = ef.start_workflow(order_saga, {**order, "amount": "20"}, workflow_id=f"o-{cart}")
        assert wid == f"o-{cart}"
        status = ef.workflow_status(order_saga, wid, wait=20)
        assert status.status == "completed"
        assert status.result == OrderResult(
            order_id=wid, charged=Decimal(20), balance=Decimal(30), cart_total=Decimal(20)
        )
        assert ef.workflow_status("Order", wid).result["balance"] == "30"
        assert ef.query_workflow(order_saga, wid, "stage") == "completed"
        events, next_after = ef.workflow_history(order_saga, wid, limit=3)
        assert [e.type for e in events] == [
            "wf.Started",
            "wf.CompensationRegistered",
            "wf.CallScheduled",
        ]
        assert next_after == 3
        listed, _ = ef.workflows(order_saga, status="completed", limit=1000)
        assert wid in {e["workflow_id"] for e in listed}
        with pytest.raises(RejectedError) as refused:
            ef.cancel_workflow(order_saga, wid, "too late")
        assert refused.value.error == "workflow_closed"
        with pytest.raises(InvalidWorkflowInputError):
            ef.start_workflow(order_saga, {"account_id": account})
        with pytest.raises(InvalidError):
            ef.start_workflow("Order", {"account_id": account})
        with pytest.raises(NotFoundError):
            ef.workflow_status(order_saga, "no-such-order")


def test_signals_queries_and_cancel_through_the_typed_client(stack: Stack) -> None:
    source, target = stack.new_id("acct"), stack.new_id("acct")
    with EntityflowClient(stack.url) as ef:
        for account in (source, target):
            ef.update(Account.open, account, owner="Ada")
        ef.update(Account.deposit, source, amount=Decimal(10))
        body = {"source": source, "target": target, "amount": "4"}
        paid = ef.start_workflow(transfer, body, idempotency_key=f"pay-{source}")
        assert ef.start_workflow(transfer, body, idempotency_key=f"pay-{source}") == paid
        assert ef.workflow_status(transfer, paid, wait=0.3).status == "running"
        ef.signal_workflow(approve, paid, Approval(by="Grace"))
        done = ef.workflow_status(transfer, paid, wait=20)
        assert done.result == TransferResult(approved_by="Grace", amount=Decimal(4))
        assert ef.query_workflow(transfer, paid, "memo_value", key="approved_by") == "Grace"
        with pytest.raises(InvalidWorkflowInputError):
            ef.signal_workflow(approve, paid, {"by": ""})  # type: ignore[arg-type]
        kept = ef.start_workflow(transfer, body)
        accepted = ef.cancel_workflow(transfer, kept, "changed my mind")
        assert ef.command(accepted).status == "applied"
        cancelled = ef.workflow_status(transfer, kept, wait=20)
        assert (cancelled.status, cancelled.error) == ("compensated", "cancelled: changed my mind")
        assert ef.query(Account.balance, source).result == Decimal(6)
        assert ef.query(Account.balance, target).result == Decimal(4)
