"""Deliberate mistakes that mypy must catch (type-checked by tests/test_typed_calls.py).

Each line marked ``# error: <fragment>`` must give a mypy error containing the fragment,
and the unmarked lines none: a handler named by reference is checked like a function.
"""

from __future__ import annotations

from decimal import Decimal

from actors import Client
from examples.shop import Account, Cart
from sagas import WorkflowContext


async def client_calls(client: Client) -> None:
    ok = await client.update(Account.withdraw, "acct-7", amount=Decimal("5"))
    total: Decimal = ok.result
    await client.update(Account.withdraw, "acct-7", amout=Decimal("5"))  # error: "amout"
    await client.update(Account.withdraw, "acct-7", amount="five")  # error: "amount"
    await client.update(Account.withdraw, 7, amount=Decimal("5"))  # error: "int"
    wrong: str = ok.result  # error: Incompatible types in assignment
    client.signal(Cart.checkout, "cart-7", now=True)  # error: "now"
    print(total, wrong)


async def workflow_calls(ctx: WorkflowContext) -> None:
    balance: Decimal = await ctx.call(Account.withdraw, "acct-7", amount=Decimal("5"))
    await ctx.call(Account.withdraw, "acct-7", amount=5.0)  # error: "float"
    await ctx.call(Account.withdraw, "acct-7")  # error: Missing positional argument "amount"
    name: int = await ctx.call(Cart.checkout, "cart-7")  # error: "Command[[], Decimal]"
    ctx.add_compensation(Account.deposit, "acct-7", amont=Decimal("5"))  # error: "amont"
    print(balance, name)
