"""@command, @query and @apply: mistakes are caught when the class is defined.

Shape errors (missing annotations, *args, async, bad names) are raised by the decorator
itself; errors that need resolved types (a query's return type, an @apply's event
class, the state's defaults, duplicate names) are raised when the class is registered
(``EntitySpec.of``, which every Host, Client and Runtime does first). This file
deliberately does not use ``from __future__ import annotations``, so the entity classes
defined inside the tests can be resolved.
"""

import re
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from actors import (
    CommandContext,
    DefinitionError,
    Entity,
    EntityCatalog,
    EntitySpec,
    InvalidArgumentsError,
    apply,
    command,
    query,
)
from eventstore import DomainEvent, RegistryError, upcaster


class S(BaseModel):
    n: int = 0


class Bumped(DomainEvent):
    event_type = "tests.decorators.Bumped"


class Renamed(DomainEvent):
    event_type = "tests.decorators.Renamed"
    schema_version = 2
    name: str


Handler = Callable[[Callable[..., Any]], Callable[..., Any]]


def _raises(pattern: str) -> Any:
    return pytest.raises(DefinitionError, match=pattern)


# -- errors raised by the decorator itself ----------------------------------------------


def test_missing_argument_annotation() -> None:
    with _raises(r"argument 'amount' needs a type annotation"):

        @command
        def deposit(self, ctx: CommandContext, amount) -> None:  # type: ignore[no-untyped-def]
            return None


def test_missing_event_annotation_on_apply() -> None:
    with _raises(r"argument 'event' needs a type annotation"):

        @apply
        def on(self, event) -> None:  # type: ignore[no-untyped-def]
            return None


def test_var_positional_arguments() -> None:
    with _raises(r"\*args is not allowed; every argument must be named and typed"):

        @command
        def handler(self: Any, ctx: CommandContext, *args: int) -> None:
            return None

    with _raises(r"\*args is not allowed; every argument must be named and typed"):

        @query
        def read(self: Any, *args: int) -> int:
            return 0


def test_a_command_takes_its_context_second() -> None:
    with _raises(r"must take \(self, ctx: CommandContext, ...\)"):

        @command
        def handler(self: Any) -> None:
            return None


def test_var_keyword_arguments() -> None:
    with _raises(r"\*kw is not allowed"):

        @command
        def handler(self: Any, ctx: CommandContext, **kw: int) -> None:
            return None


@pytest.mark.parametrize("decorator", [command, query])
def test_async_handler(decorator: Handler) -> None:
    with _raises(r"must be a plain synchronous method"):

        @decorator
        async def handler(self: Any, ctx: CommandContext) -> None:
            return None


def test_generator_handler() -> None:
    with _raises(r"must be a plain synchronous method"):

        @command
        def handler(self: Any, ctx: CommandContext) -> Any:
            yield 1


def test_positional_only_argument() -> None:
    with _raises(r"argument 'x' is positional-only; arguments arrive by name"):

        @command
        def handler(self: Any, ctx: CommandContext, x: int, /) -> None:
            return None


def test_underscore_argument_name() -> None:
    with _raises(r"argument names may not start with '_'"):

        @command
        def handler(self: Any, ctx: CommandContext, _secret: int) -> None:
            return None


def test_method_without_self() -> None:
    with _raises(r"must be a method taking self first"):

        @command
        def handler(x: int) -> None:
            return None


def test_not_a_function() -> None:
    with _raises(r"@query decorates plain methods"):
        query(staticmethod(lambda: 1))


@pytest.mark.parametrize("name", ["", "1st", "has space", "a/b", "x" * 65, "dash-ed"])
def test_handler_name_must_fit_in_urls(name: str) -> None:
    with _raises(r"must be a letter followed by up to 63 letters"):

        @command(name=name)
        def handler(self: Any, ctx: CommandContext) -> None:
            return None


def test_apply_takes_exactly_one_event() -> None:
    with _raises(r"must take exactly \(self, event: SomeEvent\)"):

        @apply
        def on(self: Any, event: Bumped, extra: int) -> None:
            return None


def test_decorators_make_a_reference_that_keeps_the_function() -> None:
    def deposit(self: Any, ctx: CommandContext, amount: int) -> int:
        return amount

    ref = command(deposit)
    assert (ref.fn, ref.name, ref.kind) == (deposit, "deposit", "command")
    renamed = command(name="put")(deposit)
    assert (renamed.fn, renamed.name) == (deposit, "put")
    with_options = ref.options(timeout=3)
    assert with_options.call_options.timeout == 3
    assert ref.call_options.timeout is None  # options make a new reference


@pytest.mark.parametrize("command_id", ["", "k" * 201])
def test_a_command_id_that_no_envelope_could_carry_is_refused_at_the_option(
    command_id: str,
) -> None:
    """Refused where it is given, naming the bound, not when the envelope is built."""

    def deposit(self: Any, ctx: CommandContext, amount: int) -> int:
        return amount

    with pytest.raises(InvalidArgumentsError, match=r"command_id must be 1 to 200 characters"):
        command(deposit).options(command_id=command_id)
    assert command(deposit).options(command_id="k" * 200).call_options.command_id == "k" * 200


def test_a_reference_binds_positional_arguments_by_declaration_order() -> None:
    from tests.actors_tests.support import Counter

    assert Counter.add.arguments((5,), {}) == {"by": 5}
    assert Counter.add.arguments((), {"by": 5}) == {"by": 5}
    with pytest.raises(InvalidArgumentsError, match="both by position and by name"):
        Counter.add.arguments((5,), {"by": 5})
    with pytest.raises(InvalidArgumentsError, match="takes at most 1 arguments"):
        Counter.add.arguments((5, 6), {})


def test_an_inherited_handler_names_the_subclass() -> None:
    class Base(Entity[S]):
        @command
        def go(self, ctx: CommandContext) -> int:
            return 1

        @apply
        def on(self, event: Bumped) -> None:
            self.state.n += 1

    class Child(Base):
        pass

    assert Base.go.entity is Base
    assert Child.go.entity is Child
    assert EntitySpec.of(Child).compiled(Child.go).fn is Base.__dict__["go"].fn


# -- errors raised when the class is registered ------------------------------------------


def test_a_query_must_return_a_value() -> None:
    class Bad(Entity[S]):
        @query
        def nothing(self) -> None:
            return None

        @apply
        def on(self, event: Bumped) -> None:
            self.state.n += 1

    with _raises(r"@query .*nothing must return a value"):
        EntitySpec.of(Bad)


def test_update_without_return_annotation() -> None:
    class Bad(Entity[S]):
        @command
        def ping(self, ctx: CommandContext):  # type: ignore[no-untyped-def]
            return 1

        @apply
        def on(self, event: Bumped) -> None:
            self.state.n += 1

    with _raises(r"needs a return annotation \(-> None if it answers nothing\)"):
        EntitySpec.of(Bad)


def test_two_handlers_with_one_name() -> None:
    class Bad(Entity[S]):
        @command(name="go")
        def go_fast(self, ctx: CommandContext) -> None:
            return None

        @command(name="go")
        def go_slow(self, ctx: CommandContext) -> None:
            return None

        @apply
        def on(self, event: Bumped) -> None:
            self.state.n += 1

    with _raises(r"defines a handler named 'go' twice"):
        EntitySpec.of(Bad)


def test_subclass_may_override_a_handler() -> None:
    class Base(Entity[S]):
        @command
        def go(self, ctx: CommandContext) -> int:
            return 1

        @apply
        def on(self, event: Bumped) -> None:
            self.state.n += 1

    class Child(Base):
        @command
        def go(self, ctx: CommandContext) -> int:
            return 2

    spec = EntitySpec.of(Child)
    assert spec.command("go").fn is Child.__dict__["go"].fn
    assert EntitySpec.of(Base).command("go").fn is Base.__dict__["go"].fn


def test_apply_without_a_domain_event_annotation() -> None:
    class Bad(Entity[S]):
        @apply
        def on(self, event: int) -> None:
            self.state.n += event

    with _raises(r"@apply .*on must annotate its event argument with a DomainEvent subclass"):
        EntitySpec.of(Bad)


def test_two_apply_methods_for_one_event() -> None:
    class Bad(Entity[S]):
        @apply
        def on_a(self, event: Bumped) -> None:
            self.state.n += 1

        @apply
        def on_b(self, event: Bumped) -> None:
            self.state.n += 2

    with _raises(r"Bad has two @apply methods for Bumped; keep one"):
        EntitySpec.of(Bad)


def test_state_without_defaults() -> None:
    class Strict(BaseModel):
        owner: str

    class Bad(Entity[Strict]):
        @apply
        def on(self, event: Bumped) -> None:
            return None

    with _raises(r"the state Strict\(\) cannot be built empty; give every field a default"):
        EntitySpec.of(Bad)


def test_state_without_defaults_is_fine_with_initial_state() -> None:
    class Strict(BaseModel):
        owner: str

    class Good(Entity[Strict]):
        @classmethod
        def initial_state(cls, entity_id: str) -> Strict:
            return Strict(owner=entity_id)

        @apply
        def on(self, event: Bumped) -> None:
            return None

    assert EntitySpec.of(Good).new("ada").state == Strict(owner="ada")


def test_entity_without_a_state_model() -> None:
    class Bad(Entity):  # type: ignore[type-arg]
        @apply
        def on(self, event: Bumped) -> None:
            return None

    with _raises(r"must name its state model: class Bad\(Entity\[MyState\]\)"):
        EntitySpec.of(Bad)


def test_entity_without_apply_methods() -> None:
    class Bad(Entity[S]):
        @command
        def go(self, ctx: CommandContext) -> None:
            return None

    with _raises(r"has no @apply methods, so it has no events"):
        EntitySpec.of(Bad)


def test_unresolvable_annotation() -> None:
    class Bad(Entity[S]):
        @command
        def go(self, ctx: CommandContext, x: "NoSuchType") -> None:  # type: ignore[name-defined]  # noqa: F821
            return None

        @apply
        def on(self, event: Bumped) -> None:
            return None

    with _raises(r"cannot resolve the annotations of .*go: name 'NoSuchType' is not defined"):
        EntitySpec.of(Bad)


@pytest.mark.parametrize("name", ["1x", "a b", "a/b", "x" * 65])
def test_invalid_type_name(name: str) -> None:
    class Bad(Entity[S]):
        type_name = name

        @apply
        def on(self, event: Bumped) -> None:
            return None

    with _raises(re.escape(repr(name)) + r" must be a letter followed by"):
        EntitySpec.of(Bad)


def test_snapshot_every_must_be_positive() -> None:
    class Bad(Entity[S]):
        snapshot_every = 0

        @apply
        def on(self, event: Bumped) -> None:
            return None

    with _raises(r"snapshot_every must be >= 1 or None"):
        EntitySpec.of(Bad)


def test_event_at_a_newer_schema_needs_its_upcasters() -> None:
    class Bad(Entity[S]):
        @apply
        def on(self, event: Renamed) -> None:
            return None

    with pytest.raises(RegistryError, match=r"no upcaster from version 1 is registered"):
        EntitySpec.of(Bad)

    class Good(Entity[S]):
        upcasters = (upcaster(Renamed, 1)(lambda d: {"name": d.get("title", "")}),)

        @apply
        def on(self, event: Renamed) -> None:
            return None

    assert EntitySpec.of(Good).events == (Renamed,)


def test_two_entity_classes_under_one_type_name() -> None:
    class A(Entity[S]):
        type_name = "Same"

        @apply
        def on(self, event: Bumped) -> None:
            return None

    class B(Entity[S]):
        type_name = "Same"

        @apply
        def on(self, event: Bumped) -> None:
            return None

    with pytest.raises(ValueError, match=r"two entity classes are registered as 'Same'"):
        EntityCatalog([A, B])


# -- what registration builds -----------------------------------------------------------


def test_argument_models_come_from_the_signature() -> None:
    from examples.shop import Account, Cart

    deposit = EntitySpec.of(Account).command("deposit")
    schema = deposit.args_model.model_json_schema()
    assert schema["required"] == ["amount"]
    assert schema["additionalProperties"] is False
    add_item = EntitySpec.of(Cart).command("add_item")
    assert set(add_item.args_model.model_json_schema()["properties"]) == {
        "sku",
        "quantity",
        "unit_price",
    }
    assert deposit.kind == "command"
    assert deposit.answers
    assert deposit.doc == "Add money; returns the new balance."


def test_defaults_of_the_signature_apply() -> None:
    from tests.actors_tests.support import Counter

    bump = EntitySpec.of(Counter).command("bump")
    assert (bump.kind, bump.answers) == ("command", False)
    assert bump.parse({}).model_dump() == {"by": 1}
    assert bump.parse({"by": 5}).model_dump() == {"by": 5}
