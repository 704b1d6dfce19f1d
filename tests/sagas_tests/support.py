"""Test entities, workflows and a lossy mailbox for the saga tests.

``Vault`` does what the shop entities never do: it can be locked, so a compensation is
refused for as long as the test wants, and one of its commands crashes. The workflows
exercise signals, queries, gather, retries and the deterministic values of the context.
``LossyMailbox`` is the in-memory mailbox that loses chosen envelopes, as a broker that
lost its data would.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field

from actors import (
    CommandContext,
    Entity,
    Envelope,
    InMemoryMailbox,
    Rejected,
    apply,
    command,
    query,
)
from eventstore import DomainEvent
from sagas import RetryPolicy, StepRejected, Workflow, WorkflowContext, WorkflowView

FAST_RETRY = RetryPolicy(attempts=4, initial_interval=0.02, backoff=2.0, max_interval=0.1)


class VaultState(BaseModel):
    locked: bool = False
    items: dict[str, int] = Field(default_factory=dict)


class VaultLocked(DomainEvent):
    event_type = "test.VaultLocked"


class VaultUnlocked(DomainEvent):
    event_type = "test.VaultUnlocked"


class VaultPut(DomainEvent):
    event_type = "test.VaultPut"
    key: str
    amount: int


class VaultTaken(DomainEvent):
    event_type = "test.VaultTaken"
    key: str
    amount: int


class Vault(Entity[VaultState]):
    """Counted items under keys; a locked vault refuses everything but unlock."""

    @command
    def lock(self, ctx: CommandContext) -> None:
        ctx.emit(VaultLocked())

    @command
    def unlock(self, ctx: CommandContext) -> None:
        ctx.emit(VaultUnlocked())

    @command
    def put(self, ctx: CommandContext, key: str, amount: Annotated[int, Field(gt=0)]) -> int:
        self._open()
        ctx.emit(VaultPut(key=key, amount=amount))
        return self.state.items[key]

    @command
    def take(self, ctx: CommandContext, key: str, amount: Annotated[int, Field(gt=0)]) -> int:
        self._open()
        held = self.state.items.get(key, 0)
        if amount > held:
            raise Rejected(f"only {held} {key} in the vault, {amount} asked")
        ctx.emit(VaultTaken(key=key, amount=amount))
        return self.state.items[key]

    @command
    def explode(self, ctx: CommandContext) -> None:
        raise RuntimeError("the vault exploded")

    @query
    def count(self, key: str) -> int:
        return self.state.items.get(key, 0)

    def _open(self) -> None:
        if self.state.locked:
            raise Rejected("the vault is locked")

    @apply
    def _locked(self, event: VaultLocked) -> None:
        self.state.locked = True

    @apply
    def _unlocked(self, event: VaultUnlocked) -> None:
        self.state.locked = False

    @apply
    def _put(self, event: VaultPut) -> None:
        self.state.items[event.key] = self.state.items.get(event.key, 0) + event.amount

    @apply
    def _taken(self, event: VaultTaken) -> None:
        self.state.items[event.key] -= event.amount


# -- a move between vaults that waits for an approval ------------------------------------


class MoveInput(BaseModel):
    source: str
    target: str
    key: str = "gold"
    amount: int = 5


class Approval(BaseModel):
    by: str


move = Workflow("Move", input=MoveInput, output=dict[str, Any])
approve = move.signal("approve", Approval)
note = move.signal("note", str)


@move.run
async def run_move(ctx: WorkflowContext, m: MoveInput) -> dict[str, Any]:
    ctx.memo["stage"] = "taking"
    with ctx.compensation(Vault.put, m.source, key=m.key, amount=m.amount):
        await ctx.call(Vault.take, m.source, key=m.key, amount=m.amount)
    ctx.memo["stage"] = "waiting"
    approval = await ctx.wait_signal(approve)
    ctx.memo["stage"] = "putting"
    ctx.memo["approved_by"] = approval.by
    await ctx.call(Vault.put, m.target, key=m.key, amount=m.amount)
    ctx.memo["stage"] = "done"
    return {"approved_by": approval.by}


@move.query
def stage(view: WorkflowView) -> str:
    return str(view.memo.get("stage", "starting"))


@move.query
def memo_value(view: WorkflowView, key: str, default: str = "-") -> str:
    return str(view.memo.get(key, default))


# -- a compensation that may be refused ------------------------------------------------


class UndoInput(BaseModel):
    vault: str
    amount: int = 3
    attempts: int = 4


undo = Workflow("Undo", input=UndoInput)
go = undo.signal("go")


@undo.run
async def run_undo(ctx: WorkflowContext, u: UndoInput) -> None:
    policy = FAST_RETRY.model_copy(update={"attempts": u.attempts})
    ctx.add_compensation(Vault.put.options(retry=policy), u.vault, key="gold", amount=u.amount)
    await ctx.call(Vault.take, u.vault, key="gold", amount=u.amount)
    ctx.memo["stage"] = "waiting"
    await ctx.wait_signal(go)
    await ctx.call(Vault.take, u.vault, key="nothing", amount=1)


# -- gather, retries of forward steps, and misbehaving code --------------------------


class FanInput(BaseModel):
    vaults: list[str]
    amount: int = 1
    fail_with: str | None = None


fan = Workflow("Fan", input=FanInput, output=list[int])


@fan.run
async def run_fan(ctx: WorkflowContext, f: FanInput) -> list[int]:
    for v in f.vaults:
        ctx.add_compensation(Vault.put.options(retry=FAST_RETRY), v, key="gold", amount=f.amount)
    calls = [ctx.call(Vault.take, v, key="gold", amount=f.amount) for v in f.vaults]
    results: list[int] = await ctx.gather(*calls)
    if f.fail_with == "error":
        raise ValueError("the code gave up")
    if f.fail_with == "asyncio":
        await asyncio.sleep(0)
    if f.fail_with == "crash":
        await ctx.call(Vault.explode, f.vaults[0])
    if f.fail_with == "retry":
        stubborn = FAST_RETRY.model_copy(update={"retry_rejected": True})
        await ctx.call(Vault.take.options(retry=stubborn), f.vaults[0], key="gold", amount=1_000)
    if f.fail_with == "refused":
        await ctx.call(Vault.take.options(retry=FAST_RETRY), f.vaults[0], key="gold", amount=1_000)
    return results


class CatchInput(BaseModel):
    vault: str


catcher = Workflow("Catch", input=CatchInput, output=str)


@catcher.run
async def run_catch(ctx: WorkflowContext, c: CatchInput) -> str:
    try:
        await ctx.call(Vault.take, c.vault, key="gold", amount=1_000_000)
    except StepRejected as exc:
        return f"caught: {exc.reason}"
    return "not refused"


# -- the deterministic values of the context -------------------------------------------


class ClockInput(BaseModel):
    vault: str


clock = Workflow("Clock", input=ClockInput, output=dict[str, Any])
tick = clock.signal("tick")


def _values(ctx: WorkflowContext) -> dict[str, Any]:
    return {"now": ctx.now().isoformat(), "random": ctx.random(), "uuid": str(ctx.uuid4())}


@clock.run
async def run_clock(ctx: WorkflowContext, c: ClockInput) -> dict[str, Any]:
    ctx.memo["first"] = _values(ctx)
    await ctx.call(Vault.put, c.vault, key=str(ctx.uuid4()), amount=1)
    ctx.memo["second"] = _values(ctx)
    await ctx.wait_signal(tick)
    ctx.memo["third"] = _values(ctx)
    return dict(ctx.memo)


@clock.query
def values(view: WorkflowView) -> dict[str, Any]:
    return view.memo


TEST_WORKFLOWS = (move, undo, fan, catcher, clock)


# -- a mailbox that loses messages -------------------------------------------------------


class LossyMailbox(InMemoryMailbox):
    """Drops the envelopes a rule picks (each rule drops ``times`` envelopes)."""

    def __init__(self, partitions: int = 4) -> None:
        super().__init__(partitions=partitions)
        self._rules: list[tuple[Callable[[Envelope], bool], list[int]]] = []
        self.dropped: list[Envelope] = []
        self._lock = threading.Lock()

    def drop(self, rule: Callable[[Envelope], bool], times: int = 1) -> None:
        with self._lock:
            self._rules.append((rule, [times]))

    def send(self, envelope: Envelope) -> Future[None]:
        with self._lock:
            for rule, left in self._rules:
                if left[0] > 0 and rule(envelope):
                    left[0] -= 1
                    self.dropped.append(envelope)
                    done: Future[None] = Future()
                    done.set_result(None)
                    return done
        return super().send(envelope)


def is_call(address: str, command: str) -> Callable[[Envelope], bool]:
    return lambda e: e.address == address and e.name == command and e.kind == "command"


def is_reply_to(workflow_address: str) -> Callable[[Envelope], bool]:
    return lambda e: e.kind == "reply" and e.address == workflow_address


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)
