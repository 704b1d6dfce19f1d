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
    _json,
)
from examples.shop import Account, AccountState
from tests.api_tests.conftest import Stack, StackFactory


def test_typed_commands_queries_state_and_history(stack: Stack) -> None:
    account = stack.new_id("acct")
    with EntityflowClient(stack.url) as ef:
        opened = ef.update(Account.open, account, owner="Ada")
        assert opened.version == 1
        assert opened.result is None
        deposit = ef.update(Account.deposit, account, amount=Decimal("25.50"))
        assert deposit.result == Decimal("25.50")
        assert isinstance(deposit.result, Decimal)
        withdraw = Account.withdraw.options(command_id=account)  # the Idempotency-Key
        accepted = ef.signal(withdraw, account, amount=Decimal(5))
        assert ef.signal(withdraw, account, amount=Decimal(5)) == accepted  # replayed
        assert stack.wait_outcome(accepted)["status"] == "applied"
        outcome = ef.command(accepted)
        assert (outcome.status, outcome.version, outcome.result) == ("applied", 3, "20.50")
        answer = ef.query(Account.balance, account)
        assert (answer.result, answer.version) == (Decimal("20.50"), 3)
        assert ef.query(Account.can_withdraw, account, amount=Decimal(30)).result is False
        assert ef.query(Account.balance.at(2), account).result == Decimal("25.50")
        state = ef.state(Account, account, version=2)
        assert state.state == AccountState(status="open", owner="Ada", balance=Decimal("25.50"))
        assert ef.state(Account, account).state.balance == Decimal("20.50")
        events, next_after = ef.events(Account, account, limit=2)
        assert [(e.type, e.version, e.stream_id) for e in events] == [
            ("AccountOpened", 1, f"Account/{account}"),
            ("Deposited", 2, f"Account/{account}"),
        ]
        assert next_after == 2


def test_errors_are_typed(stack: Stack) -> None:
    account = stack.new_id("acct")
    with EntityflowClient(stack.url) as ef:
        ef.update(Account.open, account, owner="Bo")
        with pytest.raises(RejectedError) as rejected:
            ef.update(Account.withdraw, account, amount=Decimal(1))
        assert rejected.value.error == "rejected"
        assert rejected.value.command_id
        with pytest.raises(NotFoundError):
            ef.state(Account, "nobody-here")
        with pytest.raises(InvalidArgumentsError):  # checked locally, before anything is sent
            ef.update(Account.deposit, account, amount="lots")  # type: ignore[arg-type]
        raw = ef._http.post(f"/entities/Account/{account}/updates/deposit", json={"amount": "x"})
        with pytest.raises(InvalidError) as invalid:
            _json(raw)
        assert invalid.value.body["details"][0]["loc"] == ["body", "amount"]


def test_a_timeout_keeps_the_command_id(make_stack: StackFactory) -> None:
    with make_stack(run_worker=False) as s, EntityflowClient(s.url) as ef:
        with pytest.raises(TimedOutError) as late:
            ef.update(Account.open.options(timeout=0.2), "late", owner="Cy")
        assert ef.command(late.value.command_id or "").status == "pending"
