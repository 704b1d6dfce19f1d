"""Working copies of entity state: what a handler can change in place is never shared."""

from __future__ import annotations

import datetime
import enum
from decimal import Decimal
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, PrivateAttr

from actors import CommandContext, Entity, Rejected, apply, command
from actors.entity import EntitySpec
from actors.state_copy import state_copier
from eventstore import DomainEvent

NOW = datetime.datetime(2026, 12, 7, tzinfo=datetime.UTC)


class Colour(enum.Enum):
    RED = "red"


class Point(BaseModel):
    model_config = ConfigDict(frozen=True)
    x: int
    tags: tuple[str, ...] = ()


class Line(BaseModel):  # not frozen: its fields can be assigned
    quantity: int


class Mixed(BaseModel):
    name: str = "n"
    amount: Decimal = Decimal("1.50")
    at: datetime.datetime = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    colour: Colour = Colour.RED
    status: Literal["open", "closed"] = "open"
    maybe: int | None = None
    point: Point = Point(x=1, tags=("a",))
    items: list[str] = []
    lines: dict[str, Line] = {}
    line: Line = Line(quantity=1)
    anything: Any = None


def test_values_a_handler_could_change_in_place_are_copied() -> None:
    state = Mixed(items=["a"], lines={"k": Line(quantity=1)}, anything={"deep": [1]})
    copied = state_copier(Mixed)(state)
    copied.items.append("b")
    copied.lines["k"].quantity = 5
    copied.lines["new"] = Line(quantity=2)
    copied.line.quantity = 9
    copied.anything["deep"].append(2)
    copied.name = "changed"
    assert state == Mixed(items=["a"], lines={"k": Line(quantity=1)}, anything={"deep": [1]})
    assert copied.items == ["a", "b"] and copied.line.quantity == 9


def test_immutable_values_are_shared_not_copied() -> None:
    state = Mixed(name="a" * 50, amount=Decimal("2.25"), point=Point(x=3))
    copied = state_copier(Mixed)(state)
    assert copied is not state
    for name in ("name", "amount", "at", "colour", "point"):
        assert getattr(copied, name) is getattr(state, name), name
    for name in ("items", "lines", "line"):
        assert getattr(copied, name) is not getattr(state, name), name


class Extended(Mixed):
    more: list[int] = []


def test_an_instance_of_a_subclass_is_copied_whole() -> None:
    state = Extended(more=[1])
    copied = state_copier(Mixed)(state)
    assert isinstance(copied, Extended)
    copied.more.append(2)
    assert state.more == [1]


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = ""


class Private(BaseModel):
    name: str = ""
    _seen: list[int] = PrivateAttr(default_factory=list)


def test_extras_and_private_attributes_are_copied_too() -> None:
    state = Open.model_validate({"name": "x", "bag": [1]})
    copied = state_copier(Open)(state)
    assert copied.model_extra is not None
    copied.model_extra["bag"].append(2)
    assert state.model_extra == {"bag": [1]}
    hidden = Private(name="x")
    hidden._seen.append(1)
    other = state_copier(Private)(hidden)
    other._seen.append(2)
    assert hidden._seen == [1]


def test_fields_set_stay_as_they_were() -> None:
    """A copy does not claim fields were set that were defaults (``exclude_unset``)."""
    state = Mixed(name="given")
    copied = state_copier(Mixed)(state)
    assert copied.model_fields_set == {"name"}
    assert copied.model_dump(exclude_unset=True) == {"name": "given"}


class Listed(DomainEvent):
    event_type = "tests.state_copy.Listed"
    item: str


class ShelfState(BaseModel):
    count: int = 0
    items: list[str] = []


class Shelf(Entity[ShelfState]):
    type_name = "tests.state_copy.Shelf"

    @command
    def put_then_refuse(self, ctx: CommandContext, item: str) -> None:
        ctx.emit(Listed(item=item))
        raise Rejected(f"no room for {item}")

    @apply
    def _listed(self, event: Listed) -> None:
        self.state.count += 1
        self.state.items.append(event.item)


def test_a_refused_command_leaves_a_list_its_apply_appended_to_as_it_was() -> None:
    spec = EntitySpec.of(Shelf)
    entity = spec.new("s")
    put = spec.compiled(Shelf.put_then_refuse)
    with pytest.raises(Rejected):
        spec.run_command(entity, put, put.parse({"item": "tea"}), command_id="c", now=NOW)
    assert (entity.state, entity.version) == (ShelfState(), 0)


class Node(BaseModel):
    model_config = ConfigDict(frozen=True)
    label: str
    next: Node | None = None


class Chain(BaseModel):
    head: Node | None = None


def test_a_model_that_refers_to_itself_is_decided_without_looping() -> None:
    """Recursion is not proven immutable (the check stops at the cycle): it is copied."""
    state = Chain(head=Node(label="a", next=Node(label="b")))
    copied = state_copier(Chain)(state)
    assert copied == state
    assert copied.head is not state.head
