"""The typed HTTP client against a real server: typed results, states and errors."""

from __future__ import annotations

from decimal import Decimal

import pytest

from actors import InvalidArgumentsError
from api.client import (
    EntityflowClient,
    InvalidError,
    NotFoundError,
    RejectedError,
    TimedOutError,
)
from examples.shop import Account, AccountState
from tests.api_tests.conftest import Stack, StackFactory


def test_typed_commands_queries_state_and_history(stack: Stack) -> None:
    account = stack.new_id("acct")
    with EntityflowClient(stack.url) as ef:
        opened = ef.update(Account, account, "open", owner="Ada")
        assert opened.version == 1
        assert opened.result is None
        deposit = ef.update(Account, account, "deposit", amount=Decimal("25.50"))
        assert deposit.result == Decimal("25.50")
        assert isinstance(deposit.result, Decimal)
        accepted = ef.signal(Account, account, "withdraw", amount="5", idempotency_key=account)
        assert stack.wait_outcome(accepted.command_id)["status"] == "applied"
        assert ef.command(accepted.command_id).version == 3
        answer = ef.query(Account, account, "balance")
        assert (answer.result, answer.version) == (Decimal("20.50"), 3)
        assert ef.query(Account, account, "can_withdraw", amount="30").result is False
        assert ef.query("Account", account, "balance", version=2).result == "25.50"
        state = ef.state(Account, account, version=2)
        assert state.state == AccountState(status="open", owner="Ada", balance=Decimal("25.50"))
        assert ef.state("Account", account).state["balance"] == "20.50"
        events, next_after = ef.events(Account, account, limit=2)
        assert [e["type"] for e in events] == ["AccountOpened", "Deposited"]
        assert next_after == 2


def test_errors_are_typed(stack: Stack) -> None:
    account = stack.new_id("acct")
    with EntityflowClient(stack.url) as ef:
        ef.update(Account, account, "open", owner="Bo")
        with pytest.raises(RejectedError) as rejected:
            ef.update(Account, account, "withdraw", amount="1")
        assert rejected.value.error == "rejected"
        assert rejected.value.command_id
        with pytest.raises(NotFoundError):
            ef.state(Account, "nobody-here")
        with pytest.raises(InvalidError) as invalid:
            ef.update("Account", account, "deposit", amount="lots")
        assert invalid.value.body["details"][0]["loc"] == ["body", "amount"]
        with pytest.raises(InvalidArgumentsError):  # checked locally when the class is given
            ef.update(Account, account, "deposit", amount="lots")


def test_a_timeout_keeps_the_command_id(make_stack: StackFactory) -> None:
    with make_stack(run_worker=False) as s, EntityflowClient(s.url) as ef:
        with pytest.raises(TimedOutError) as late:
            ef.update(Account, "late", "open", owner="Cy", timeout=0.2)
        assert ef.command(late.value.command_id or "").status == "pending"
