"""The ``Entity`` base class and its registration-time description, ``EntitySpec``.

An entity is a long-lived actor whose state is a pydantic model rebuilt from its events.
Command handlers decide (and may ``raise Rejected``); ``@apply`` methods are the only place
state changes. Registration (``EntitySpec.of``) resolves every handler's types once and
builds the pydantic models that validate arguments, document them in OpenAPI and encode
results; nothing is looked up by string at run time.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from actors.decorators import APPLY_ATTR, HANDLER_ATTR, HandlerKind, HandlerMark
from actors.errors import (
    ActorsError,
    DefinitionError,
    InvalidAddressError,
    InvalidArgumentsError,
    QueryMutationError,
    UnknownCommandError,
)
from eventstore import DomainEvent, EventRegistry, JSONDict, LoadedStream, Upcaster

S = TypeVar("S", bound=BaseModel)
E = TypeVar("E", bound="Entity[Any]")
_ID = re.compile(r"^[^\s/\x00-\x1f\x7f]{1,200}$")
_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,63}$")
_Mode = Literal["idle", "command", "query"]


def check_entity_id(entity_id: str) -> str:
    if not isinstance(entity_id, str) or not _ID.match(entity_id):
        raise InvalidAddressError(
            f"entity id {entity_id!r} is not valid: use 1 to 200 characters without "
            "'/', spaces or control characters"
        )
    return entity_id


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

    def __init__(self, entity_id: str, state: S, version: int = 0) -> None:
        self._id = entity_id
        self._state = state
        self._version = version
        self._spec = EntitySpec.of(type(self))
        self._mode: _Mode = "idle"
        self._emitted: list[DomainEvent] = []
        self._command_id: str | None = None
        self._now: datetime | None = None

    @classmethod
    def initial_state(cls, entity_id: str) -> S:
        """The state before the first event; override when fields need no defaults."""
        return typing.cast(S, cls.state_type())

    @property
    def id(self) -> str:
        return self._id

    @property
    def address(self) -> str:
        return f"{self._spec.type_name}/{self._id}"

    @property
    def state(self) -> S:
        return self._state

    @state.setter
    def state(self, value: S) -> None:
        if self._mode == "query":
            raise QueryMutationError(f"a query may not replace the state of {self.address}")
        self._state = value

    @property
    def version(self) -> int:
        """The number of events applied so far (0 for a new entity)."""
        return self._version

    @property
    def command_id(self) -> str | None:
        """The id of the command being handled, for events that want to carry it."""
        return self._command_id

    def now(self) -> datetime:
        """The time the current command is handled (fixed for the whole command)."""
        return self._now or datetime.now(UTC)

    def emit(self, event: DomainEvent) -> None:
        """Record an event: it is applied to the state at once and committed with the batch."""
        if self._mode == "query":
            raise QueryMutationError(
                f"a query may not emit events (tried {type(event).__name__} on {self.address})"
            )
        if self._mode != "command":
            raise ActorsError("emit() is only allowed inside a command handler")
        self._spec.apply(self, event)
        self._emitted.append(event)

    def __repr__(self) -> str:
        return f"<{self.address} v{self._version}>"


@dataclass(frozen=True)
class CommandSpec:
    """One signal, update or query: its argument model, result encoder and method."""

    entity_type: str
    kind: HandlerKind
    name: str
    fn: Callable[..., Any]
    args_model: type[BaseModel]
    result_type: Any
    result_adapter: TypeAdapter[Any] | None
    doc: str

    def parse(self, args: Mapping[str, Any] | None) -> BaseModel:
        if args is not None and not isinstance(args, Mapping):
            raise InvalidArgumentsError(
                f"{self.entity_type}.{self.name} takes a JSON object of named arguments"
            )
        try:
            return self.args_model.model_validate(dict(args or {}))
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False)
            raise InvalidArgumentsError(
                f"invalid arguments for {self.entity_type}.{self.name}: "
                + "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or '(body)'}: {e['msg']}" for e in errors
                ),
                [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors],
            ) from exc

    def invoke(self, entity: Entity[Any], parsed: BaseModel) -> Any:
        return self.fn(entity, **dict(parsed))

    def encode_result(self, value: Any) -> Any:
        """The JSON-ready form of a handler's return value."""
        if self.result_adapter is None:
            return None
        return self.result_adapter.dump_python(value, mode="json")


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

    def command(self, name: str) -> CommandSpec:
        """A signal or update by name; either may be sent fire-and-forget or awaited."""
        spec = self.handlers.get(name)
        if spec is None or spec.kind == "query":
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
        return [s for s in self.handlers.values() if s.kind != "query"]

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

    def snapshot_state(self, entity: Entity[Any]) -> JSONDict:
        state: JSONDict = entity.state.model_dump(mode="json")
        return state

    def run_query(self, entity: Entity[Any], name: str, args: Mapping[str, Any] | None) -> Any:
        """Evaluate a query; it fails if it emits or changes the state."""
        spec = self.query(name)
        parsed = spec.parse(args)
        before = entity.state.model_dump()
        entity._mode = "query"
        try:
            value = spec.invoke(entity, parsed)
        finally:
            entity._mode = "idle"
        if entity.state.model_dump() != before:
            raise QueryMutationError(
                f"query {self.type_name}.{name} changed the state; queries are read-only, "
                "use a signal or update to change state"
            )
        return spec.encode_result(value)


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


def _command_spec(type_name: str, mark: HandlerMark) -> CommandSpec:
    hints = _type_hints(mark.fn)
    fields: dict[str, Any] = {}
    for p in list(inspect.signature(mark.fn).parameters.values())[1:]:
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (hints[p.name], default)
    model_name = f"{type_name.replace('.', '_')}_{mark.name}_args"
    args_model = create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)
    returns = hints.get("return", inspect.Signature.empty)
    if mark.kind == "signal":
        if returns not in (None, type(None), inspect.Signature.empty):
            raise DefinitionError(
                f"@signal {mark.fn.__qualname__} returns {returns!r}; signals answer nothing "
                "(make it an @update to return a result)"
            )
        adapter = None
    else:
        if returns is inspect.Signature.empty:
            raise DefinitionError(
                f"@{mark.kind} {mark.fn.__qualname__} needs a return annotation "
                "(-> None if it returns nothing)"
            )
        adapter = TypeAdapter(returns)
    return CommandSpec(
        entity_type=type_name,
        kind=mark.kind,
        name=mark.name,
        fn=mark.fn,
        args_model=args_model,
        result_type=returns if adapter else None,
        result_adapter=adapter,
        doc=inspect.cleandoc(mark.fn.__doc__ or ""),
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
            mark = getattr(attr, HANDLER_ATTR, None)
            if isinstance(mark, HandlerMark):
                if owners.get(mark.name) is klass:
                    raise DefinitionError(
                        f"{klass.__qualname__} defines a handler named {mark.name!r} twice"
                    )
                owners[mark.name] = klass
                handlers[mark.name] = _command_spec(type_name, mark)
            if getattr(attr, APPLY_ATTR, False):
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
    )
