"""Workflow definitions are checked when they are declared and when they are registered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from actors import InMemoryMailbox, InvalidAddressError, UnknownCommandError
from eventstore import EventRegistry, Store
from examples.shop import Account, order_saga
from sagas import (
    HISTORY_EVENTS,
    Engine,
    InvalidWorkflowInputError,
    RetryPolicy,
    UnknownWorkflowError,
    Workflow,
    WorkflowClient,
    WorkflowContext,
    WorkflowDefinitionError,
    WorkflowKind,
    WorkflowNotFoundError,
    WorkflowView,
)
from sagas.history import Started


class Empty(BaseModel):
    pass


VALID_ORDER = {
    "account_id": "a",
    "cart_id": "c",
    "amount": "1.00",
    "lines": [{"sku": "x", "quantity": 1}],
}


def test_names_and_types_are_checked() -> None:
    with pytest.raises(WorkflowDefinitionError, match="workflow name 'has space'"):
        Workflow("has space", input=Empty)
    with pytest.raises(WorkflowDefinitionError, match="input must be a pydantic model"):
        Workflow("Bad", input=dict)  # type: ignore[type-var]
    with pytest.raises(WorkflowDefinitionError, match="signal name"):
        Workflow("Bad", input=Empty).signal("no-dashes")


def test_run_must_be_an_async_function_of_ctx_and_input() -> None:
    wf = Workflow("Shape", input=Empty)

    def not_async(ctx: WorkflowContext, data: Empty) -> None:
        return None

    async def one_argument(ctx: WorkflowContext) -> None:
        return None

    with pytest.raises(WorkflowDefinitionError, match="must be an `async def`"):
        wf.run(not_async)  # type: ignore[arg-type]
    with pytest.raises(WorkflowDefinitionError, match="exactly two arguments"):
        wf.run(one_argument)  # type: ignore[arg-type]

    async def good(ctx: WorkflowContext, data: Empty) -> None:
        return None

    assert wf.run(good) is good  # returned unchanged

    async def another(ctx: WorkflowContext, data: Empty) -> None:
        return None

    with pytest.raises(WorkflowDefinitionError, match="already has a run function"):
        wf.run(another)


def test_queries_are_checked() -> None:
    wf = Workflow("Q", input=Empty)

    with pytest.raises(WorkflowDefinitionError, match="synchronous"):

        @wf.query
        async def asynchronous(view: WorkflowView) -> int:
            return 1

    with pytest.raises(WorkflowDefinitionError, match="return annotation"):

        @wf.query
        def untyped(view: WorkflowView):  # type: ignore[no-untyped-def]
            return 1

    @wf.query(name="renamed")
    def fine(view: WorkflowView, n: int = 2) -> int:
        return n

    assert set(wf.queries) == {"renamed"}
    with pytest.raises(WorkflowDefinitionError, match="two queries"):
        wf.query(name="renamed")(fine)


def test_registration_needs_a_run_function() -> None:
    with pytest.raises(WorkflowDefinitionError, match="has no run function"):
        WorkflowKind(Workflow("Idle", input=Empty))


def test_retry_policy_is_a_frozen_checked_value() -> None:
    policy = RetryPolicy(attempts=5, initial_interval=0.5, backoff=3.0, max_interval=2.0)
    assert [policy.delay(n).total_seconds() for n in range(1, 6)] == [0.0, 0.5, 1.5, 2.0, 2.0]
    assert policy.allows(5) and not policy.allows(6)
    with pytest.raises(ValueError, match="max_interval"):
        RetryPolicy(initial_interval=5, max_interval=1)
    with pytest.raises(ValueError, match="frozen"):
        policy.attempts = 3  # type: ignore[misc]


def test_client_checks_names_ids_and_inputs(sqlite_url: str) -> None:
    with Store(sqlite_url, EventRegistry(HISTORY_EVENTS)) as store:
        client = WorkflowClient(InMemoryMailbox(), store, [order_saga])
        with pytest.raises(UnknownWorkflowError, match="no workflow type 'Nope'"):
            client.start("Nope", {})
        with pytest.raises(InvalidWorkflowInputError, match="lines"):
            client.start(order_saga, {"account_id": "a", "cart_id": "c", "amount": "1.00"})
        with pytest.raises(InvalidWorkflowInputError, match="each SKU may appear on one line"):
            client.start(
                order_saga,
                {
                    "account_id": "a",
                    "cart_id": "c",
                    "amount": "1.00",
                    "lines": [{"sku": "x", "quantity": 1}, {"sku": "x", "quantity": 2}],
                },
            )
        with pytest.raises(InvalidAddressError):
            client.start(order_saga, VALID_ORDER, workflow_id="has/slash")
        with pytest.raises(InvalidWorkflowInputError, match="longer than 100"):
            client.status(order_saga, "x" * 101)
        with pytest.raises(WorkflowNotFoundError, match="has not started"):
            client.status(order_saga, "never")
        with pytest.raises(WorkflowNotFoundError):
            client.history(order_saga, "never")
        assert client.executions(order_saga) == []
    with pytest.raises(ValueError, match="two workflows"):
        WorkflowClient(InMemoryMailbox(), store, [order_saga, _clone_of_order()])


def _clone_of_order() -> Workflow[Any, Any]:
    twin = Workflow("Order", input=Empty)

    @twin.run
    async def run(ctx: WorkflowContext, data: Empty) -> None:
        await ctx.call(Account.close, "a")

    return twin


def test_calls_are_validated_against_the_entity() -> None:
    """ctx.call checks the handler and its arguments before anything is scheduled."""
    wf = Workflow("Probe", input=Empty, output=str)

    @wf.run
    async def run(ctx: WorkflowContext, data: Empty) -> str:
        try:
            ctx.call(Account.balance, "a")  # type: ignore[arg-type]
        except UnknownCommandError as exc:
            first = str(exc)
        try:
            ctx.call(Account.deposit, "a", amount="-5")  # type: ignore[arg-type]
        except Exception as exc:
            second = type(exc).__name__
        return f"{first} | {second}"

    engine = Engine(wf, "workflow:Probe/p-1")
    decisions = engine.feed(Started(at=datetime.now(UTC), input={}, seed=1))
    assert [d.event_type for d in decisions] == ["wf.Completed"]
    assert engine.result == (
        "<query Account.balance> is a query, not a command: a workflow calls commands | "
        "InvalidArgumentsError"
    )


def test_public_names_are_pinned() -> None:
    import sagas

    assert sagas.__all__ == sorted(sagas.__all__, key=lambda n: (not n.isupper(), n))
    assert {
        "Workflow",
        "WorkflowContext",
        "WorkflowKind",
        "WorkflowClient",
        "WorkflowView",
        "RetryPolicy",
        "StepFailed",
        "StepRejected",
        "NonDeterminismError",
        "ExecutionStatus",
    } <= set(sagas.__all__)
    for name in sagas.__all__:
        assert getattr(sagas, name) is not None, name
