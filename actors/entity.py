"""The ``Entity`` base class and its registration-time description, ``EntitySpec``.

An entity is a long-lived actor whose state is a pydantic model rebuilt from its events.
Command handlers decide (``ctx.emit(...)``, or ``raise Rejected``); ``@apply`` methods are
the only place state changes. Registration (``EntitySpec.of``) resolves every handler's
types once and builds the pydantic models that validate arguments, document them in
OpenAPI and encode and decode results; nothing is looked up by string at run time except
at the HTTP edge.

A command runs on a working copy of the entity: if it is refused or crashes the copy is
dropped and the entity is as it was; if it succeeds the copy becomes the entity. A query
runs on a copy too, so nothing it does can change the entity.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from actors.address import check_entity_id
from actors.context import CommandContext
from actors.errors import DefinitionError, InvalidArgumentsError, UnknownCommandError
from actors.handlers import APPLY_ATTR, Command, Handler, HandlerKind, Query
from actors.state_copy import state_copier
from eventstore import DomainEvent, EventRegistry, JSONDict, LoadedStream, Upcaster, explain
from eventstore import details as error_details

S = TypeVar("S", bound=BaseModel)
_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,63}$")


class Entity(Generic[S]):
    """Base class of user entities: ``class Account(Entity[AccountState])``.

    Class options (all optional): ``type_name`` (default: the class name, used in
    addresses and URLs), ``state_version`` (bump when the state model changes shape, so
    old snapshots are ignored), ``snapshot_every`` (events between snapshots; default
    from the runtime), ``upcasters`` (for events whose schema version was bumped).
    """

    type_name: ClassVar[str] = ""
    state_type: ClassVar[type[BaseModel]]
    state_version: ClassVar[int] = 1
    snapshot_every: ClassVar[int | None] = None
    upcasters: ClassVar[Sequence[Upcaster]] = ()

    __slots__ = ("_id", "_version", "state")

    def __init__(self, entity_id: str, state: S, version: int = 0) -> None:
        self._id = entity_id
        self.state: S = state
        """The state: read it anywhere; change it only in ``@apply`` methods."""
        self._version = version

    @classmethod
    def initial_state(cls, entity_id: str) -> S:
        """The state before the first event; override when fields need no defaults."""
        return typing.cast(S, cls.state_type())

    @property
    def id(self) -> str:
        return self._id

    @property
    def address(self) -> str:
        return f"{EntitySpec.of(type(self)).type_name}/{self._id}"

    @property
    def version(self) -> int:
        """The number of events applied so far (0 for a new entity)."""
        return self._version

    def __repr__(self) -> str:
        return f"<{self.address} v{self._version}>"


@dataclass(frozen=True)
class CommandSpec:
    """One command or query, compiled: its argument model, result type and method."""

    entity_type: str
    kind: HandlerKind
    name: str
    handler: Handler[Any, Any]
    args_model: type[BaseModel]
    result_type: Any
    result_adapter: TypeAdapter[Any] | None
    doc: str

    @property
    def fn(self) -> Callable[..., Any]:
        return self.handler.fn

    @property
    def answers(self) -> bool:
        """Whether the handler returns a result (``-> None`` does not)."""
        return self.result_adapter is not None

    def _invalid(self, exc: ValidationError) -> InvalidArgumentsError:
        return InvalidArgumentsError(
            f"invalid arguments for {self.entity_type}.{self.name}: {explain(exc)}",
            error_details(exc),
        )

    def parse(self, args: Mapping[str, Any] | None) -> BaseModel:
        if args is not None and not isinstance(args, Mapping):
            raise InvalidArgumentsError(
                f"{self.entity_type}.{self.name} takes a JSON object of named arguments"
            )
        try:
            return self.args_model.model_validate(dict(args or {}))
        except ValidationError as exc:
            raise self._invalid(exc) from exc

    def encode_result(self, value: Any) -> Any:
        """The JSON-ready form of a handler's return value."""
        if self.result_adapter is None:
            return None
        return self.result_adapter.dump_python(value, mode="json")

    def decode_result(self, data: Any) -> Any:
        """A result as the handler declared it (``Decimal``, a model...), from its JSON form."""
        if self.result_adapter is None:
            return None
        return self.result_adapter.validate_python(data)


@dataclass(frozen=True)
class EntitySpec:
    """Everything the runtime and the API need to know about one entity class."""

    cls: type[Entity[Any]]
    type_name: str
    state_type: type[BaseModel]
    snapshot_type: str
    snapshot_every: int | None
    handlers: dict[str, CommandSpec]
    evolvers: dict[type[DomainEvent], Callable[[Any, Any], None]]
    registry: EventRegistry = field(repr=False)
    copy_state: Callable[[BaseModel], BaseModel] = field(repr=False, compare=False)

    @staticmethod
    def of(entity_cls: type[Entity[Any]]) -> EntitySpec:
        """The spec of an entity class, built and checked once per class."""
        spec = entity_cls.__dict__.get("_entityflow_spec")
        if spec is None:
            spec = _build_spec(entity_cls)
            entity_cls._entityflow_spec = spec  # type: ignore[attr-defined]
        return typing.cast(EntitySpec, spec)

    @property
    def events(self) -> tuple[type[DomainEvent], ...]:
        return tuple(self.evolvers)

    def compiled(self, handler: Handler[Any, Any]) -> CommandSpec:
        """The compiled form of one of this entity's handler references."""
        found = self.handlers.get(handler.name)
        if found is None or found.handler.fn is not handler.fn:
            raise UnknownCommandError(f"{handler!r} is not a handler of {self.type_name}")
        return found

    def self_command_body(
        self, handler: Handler[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> JSONDict:
        """The validated body of a command this entity sends itself (a timer)."""
        if EntitySpec.of(handler.entity) is not self:
            raise InvalidArgumentsError(
                f"a timer sends {self.type_name} one of its own commands; {handler!r} is "
                f"not one (to reach another entity, run a workflow)"
            )
        command = self.compiled(handler)
        if command.kind != "command":
            raise InvalidArgumentsError(f"{handler!r} is a query; a timer sends a command")
        body: JSONDict = command.parse(handler.arguments(args, kwargs)).model_dump(mode="json")
        return body

    def command(self, name: str) -> CommandSpec:
        """A command by name (the HTTP edge); it may be sent as a signal or an update."""
        spec = self.handlers.get(name)
        if spec is None or spec.kind != "command":
            raise UnknownCommandError(
                f"{self.type_name} has no command named {name!r}; its commands are: "
                + (", ".join(sorted(s.name for s in self.commands())) or "(none)")
            )
        return spec

    def query(self, name: str) -> CommandSpec:
        spec = self.handlers.get(name)
        if spec is None or spec.kind != "query":
            raise UnknownCommandError(
                f"{self.type_name} has no query named {name!r}; its queries are: "
                + (", ".join(sorted(s.name for s in self.queries())) or "(none)")
            )
        return spec

    def commands(self) -> list[CommandSpec]:
        return [s for s in self.handlers.values() if s.kind == "command"]

    def queries(self) -> list[CommandSpec]:
        return [s for s in self.handlers.values() if s.kind == "query"]

    def address(self, entity_id: str) -> str:
        return f"{self.type_name}/{check_entity_id(entity_id)}"

    def new(self, entity_id: str) -> Entity[Any]:
        return self.cls(entity_id, self.cls.initial_state(entity_id), 0)

    def apply(self, entity: Entity[Any], event: DomainEvent) -> None:
        evolver = self.evolvers.get(type(event))
        if evolver is None:
            raise DefinitionError(
                f"{self.type_name} has no @apply method for {type(event).__name__}; add "
                f"`@apply def on_x(self, event: {type(event).__name__}) -> None`"
            )
        evolver(entity, event)
        entity._version += 1

    def rehydrate(self, entity_id: str, stream: LoadedStream) -> Entity[Any]:
        """Rebuild an entity from its newest snapshot and the events after it."""
        if stream.snapshot is not None:
            state = self.state_type.model_validate(stream.snapshot.state)
            entity = self.cls(entity_id, state, stream.snapshot.originator_version)
        else:
            entity = self.new(entity_id)
        self.fold(entity, (r.event for r in stream.events))
        return entity

    def fold(self, entity: Entity[Any], events: Iterable[DomainEvent]) -> None:
        for event in events:
            self.apply(entity, event)

    def copy(self, entity: Entity[Any]) -> Entity[Any]:
        """A working copy: changing it leaves ``entity`` as it is."""
        return self.cls(entity.id, self.copy_state(entity.state), entity.version)

    def snapshot_state(self, entity: Entity[Any]) -> JSONDict:
        state: JSONDict = entity.state.model_dump(mode="json")
        return state

    def run_command(
        self,
        entity: Entity[Any],
        command: CommandSpec,
        parsed: BaseModel,
        *,
        command_id: str,
        now: datetime,
    ) -> tuple[Entity[Any], CommandContext, Any]:
        """Run a command on a working copy: (the copy, its context, the return value).

        Whatever it raises (``Rejected`` included) leaves ``entity`` untouched.
        """
        working = self.copy(entity)
        ctx = CommandContext(
            lambda event: self.apply(working, event), command_id, now, self.self_command_body
        )
        value = command.fn(working, ctx, **dict(parsed))
        return working, ctx, value

    def run_query(self, entity: Entity[Any], query: CommandSpec, parsed: BaseModel) -> Any:
        """Evaluate a query on a copy of the entity; its JSON-ready result."""
        return query.encode_result(query.fn(self.copy(entity), **dict(parsed)))


def _state_type_of(cls: type[Entity[Any]]) -> type[BaseModel]:
    explicit = cls.__dict__.get("state_type")
    if explicit is not None:
        return typing.cast(type[BaseModel], explicit)
    for klass in cls.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            if typing.get_origin(base) is Entity:
                (arg,) = typing.get_args(base)
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    return arg
    raise DefinitionError(
        f"{cls.__qualname__} must name its state model: class {cls.__name__}(Entity[MyState])"
    )


def _type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except (NameError, TypeError) as exc:
        raise DefinitionError(
            f"cannot resolve the annotations of {fn.__qualname__}: {exc}"
        ) from exc


def _compile(type_name: str, handler: Handler[Any, Any]) -> CommandSpec:
    fn = handler.fn
    hints = _type_hints(fn)
    skip = 2 if isinstance(handler, Command) else 1
    fields: dict[str, Any] = {}
    for p in list(inspect.signature(fn).parameters.values())[skip:]:
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (hints[p.name], default)
    model_name = f"{type_name.replace('.', '_')}_{handler.name}_args"
    args_model = create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)
    returns = hints.get("return", inspect.Signature.empty)
    if returns is inspect.Signature.empty:
        raise DefinitionError(
            f"@{handler.kind} {fn.__qualname__} needs a return annotation "
            "(-> None if it answers nothing)"
        )
    answers = returns not in (None, type(None))
    if not answers and isinstance(handler, Query):
        raise DefinitionError(f"@query {fn.__qualname__} must return a value")
    return CommandSpec(
        entity_type=type_name,
        kind=handler.kind,
        name=handler.name,
        handler=handler,
        args_model=args_model,
        result_type=returns if answers else None,
        result_adapter=TypeAdapter(returns) if answers else None,
        doc=inspect.cleandoc(fn.__doc__ or ""),
    )


def _applied_event(fn: Callable[..., Any]) -> type[DomainEvent]:
    """The event class an ``@apply`` method folds, from its resolved annotation."""
    hints = _type_hints(fn)
    param = [n for n in hints if n != "return"]
    event_type = hints[param[0]] if param else None
    if not (isinstance(event_type, type) and issubclass(event_type, DomainEvent)):
        raise DefinitionError(
            f"@apply {fn.__qualname__} must annotate its event argument with a DomainEvent subclass"
        )
    return event_type


def _build_spec(cls: type[Entity[Any]]) -> EntitySpec:
    if not (isinstance(cls, type) and issubclass(cls, Entity)):
        raise DefinitionError(f"{cls!r} is not an Entity subclass")
    type_name = cls.__dict__.get("type_name") or cls.__name__
    if not _TYPE.match(type_name):
        raise DefinitionError(
            f"entity type name {type_name!r} must be a letter followed by letters, digits, "
            "'_' or '.' (at most 64)"
        )
    state_type = _state_type_of(cls)
    if "state_type" not in cls.__dict__:
        cls.state_type = state_type
    handlers: dict[str, CommandSpec] = {}
    evolvers: dict[type[DomainEvent], Callable[[Any, Any], None]] = {}
    # Where each name / event was last defined: a subclass may override its bases, but
    # one class may not define the same handler name or event twice.
    owners: dict[object, type] = {}
    for klass in reversed(cls.__mro__):
        for attr in vars(klass).values():
            if isinstance(attr, Handler):
                if owners.get(attr.name) is klass:
                    raise DefinitionError(
                        f"{klass.__qualname__} defines a handler named {attr.name!r} twice"
                    )
                owners[attr.name] = klass
                handlers[attr.name] = _compile(type_name, attr)
            elif getattr(attr, APPLY_ATTR, False):
                event_type = _applied_event(attr)
                if owners.get(event_type) is klass:
                    raise DefinitionError(
                        f"{klass.__qualname__} has two @apply methods for "
                        f"{event_type.__name__}; keep one"
                    )
                owners[event_type] = klass
                evolvers[event_type] = attr
    if not evolvers:
        raise DefinitionError(f"{cls.__qualname__} has no @apply methods, so it has no events")
    try:
        cls.initial_state("probe")
    except (ValidationError, TypeError) as exc:
        raise DefinitionError(
            f"{cls.__qualname__}: the state {state_type.__name__}() cannot be built empty; "
            "give every field a default or override initial_state()"
        ) from exc
    registry = EventRegistry(evolvers, cls.upcasters)
    registry.validate()
    every = cls.snapshot_every
    if every is not None and every < 1:
        raise DefinitionError(f"{cls.__qualname__}.snapshot_every must be >= 1 or None")
    return EntitySpec(
        cls=cls,
        type_name=type_name,
        state_type=state_type,
        snapshot_type=f"{type_name}@{cls.state_version}",
        snapshot_every=every,
        handlers=handlers,
        evolvers=evolvers,
        registry=registry,
        copy_state=state_copier(state_type),
    )
