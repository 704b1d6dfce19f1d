"""A customer account holding money; withdrawals may not overdraw it."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from actors import CommandContext, Entity, Rejected, apply, command, query
from eventstore import DomainEvent

Money = Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=2)]


class AccountState(BaseModel):
    status: Literal["new", "open", "closed"] = "new"
    owner: str = ""
    balance: Decimal = Decimal("0")


class AccountOpened(DomainEvent):
    event_type = "AccountOpened"
    owner: str


class Deposited(DomainEvent):
    event_type = "Deposited"
    amount: Decimal


class Withdrawn(DomainEvent):
    event_type = "Withdrawn"
    amount: Decimal


class AccountClosed(DomainEvent):
    event_type = "AccountClosed"


class Account(Entity[AccountState]):
    """Money in, money out, never below zero."""

    @command
    def open(
        self, ctx: CommandContext, owner: Annotated[str, Field(min_length=1, max_length=200)]
    ) -> None:
        """Open the account for its owner."""
        if self.state.status != "new":
            raise Rejected(f"account is already {self.state.status}")
        ctx.emit(AccountOpened(owner=owner))

    @command
    def deposit(self, ctx: CommandContext, amount: Money) -> Decimal:
        """Add money; returns the new balance."""
        self._require_open()
        ctx.emit(Deposited(amount=amount))
        return self.state.balance

    @command
    def withdraw(self, ctx: CommandContext, amount: Money) -> Decimal:
        """Take money out; refused when the balance is too low. Returns the new balance."""
        self._require_open()
        if amount > self.state.balance:
            raise Rejected(f"insufficient funds: balance {self.state.balance}, asked {amount}")
        ctx.emit(Withdrawn(amount=amount))
        return self.state.balance

    @command
    def close(self, ctx: CommandContext) -> None:
        """Close an empty account."""
        self._require_open()
        if self.state.balance != 0:
            raise Rejected(f"balance must be zero to close, it is {self.state.balance}")
        ctx.emit(AccountClosed())

    @query
    def balance(self) -> Decimal:
        return self.state.balance

    @query
    def can_withdraw(self, amount: Money) -> bool:
        return self.state.status == "open" and amount <= self.state.balance

    def _require_open(self) -> None:
        if self.state.status != "open":
            raise Rejected(f"account is {self.state.status}, not open")

    @apply
    def _opened(self, event: AccountOpened) -> None:
        self.state.status = "open"
        self.state.owner = event.owner

    @apply
    def _deposited(self, event: Deposited) -> None:
        self.state.balance += event.amount

    @apply
    def _withdrawn(self, event: Withdrawn) -> None:
        self.state.balance -= event.amount

    @apply
    def _closed(self, event: AccountClosed) -> None:
        self.state.status = "closed"
