"""``@command``, ``@query`` and ``@apply``: how an entity declares what it does.

A decorated method becomes a *handler reference*: ``Account.withdraw`` is the value every
caller names the handler by (a workflow's ``ctx.call(Account.withdraw, ...)``, a client's
``client.update(Account.withdraw, ...)``), typed from the method's signature, so mypy
and an IDE check every call's argument names and types and know its result type. Names
as strings appear only at the HTTP edge.

- a **command** may change state: ``(self, ctx, **args) -> R``. It runs on a working copy
  of the state; ``ctx.emit(event)`` records an event and applies it to that copy at once;
  ``raise Rejected(...)`` discards the copy. Any command can be sent fire-and-forget (a
  signal, HTTP 202) or awaited for its result (an update, HTTP 200); ``-> None`` means
  it answers nothing.
- a **query** reads state and returns a result: ``(self, **args) -> R``; it sees a copy,
  so nothing it does can change the entity, and it never goes through the mailbox.
- an **apply** method folds one event type into the state; it is the only place state
  changes, so replaying the events rebuilds exactly the same state.

Handlers are synchronous on purpose: they run inside a worker's batch, between reading
state and committing events, where waiting on I/O would stall every entity of the
partition. Side effects belong in workflows and activities.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Concatenate, Generic, Literal, ParamSpec, Self, TypeVar, overload

from actors.context import CommandContext
from actors.envelopes import COMMAND_ID_MAX_LENGTH
from actors.errors import DefinitionError, InvalidArgumentsError
from actors.retry import RetryPolicy

HandlerKind = Literal["command", "query"]
P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

APPLY_ATTR = "__entityflow_apply__"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class CallOptions:
    """How one call is made, kept apart from the handler's own arguments.

    ``timeout``: seconds an awaited command waits for its result; ``command_id``: the id
    that makes a retry the same command; ``retry``: how a workflow tries a refused or
    crashed call again; ``version``: the version a query reads (time travel).
    """

    timeout: float | None = None
    command_id: str | None = None
    retry: RetryPolicy | None = None
    version: int | None = None


class Handler(Generic[P, R]):
    """One handler of one entity type, as callers name it (``Account.withdraw``)."""

    kind: HandlerKind

    def __init__(self, fn: Callable[..., Any], name: str | None, *, skip: int) -> None:
        _check_parameters(fn, self.kind, skip)
        handler_name = fn.__name__ if name is None else name
        if not _NAME.match(handler_name):
            raise DefinitionError(
                f"@{self.kind} name {handler_name!r} must be a letter followed by up to 63 "
                "letters, digits or underscores (it appears in URLs)"
            )
        self.fn = fn
        self.name = handler_name
        self.owner: type[Any] | None = None
        self.call_options = CallOptions()
        self._skip = skip
        self._params = list(inspect.signature(fn).parameters.values())[skip:]
        self._rebound: dict[type[Any], Any] = {}
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.owner = owner

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, instance: object, owner: type[Any]) -> Callable[..., R]: ...
    def __get__(self, instance: object, owner: type[Any] | None = None) -> Any:
        if instance is not None:
            return self.fn.__get__(instance, owner)  # a plain method call from entity code
        if owner is None or owner is self.owner or self.owner is None:
            return self
        # Inherited by a subclass: a reference of its own, naming the subclass's type.
        found = self._rebound.get(owner)
        if found is None:
            fresh = copy.copy(self)
            fresh.owner = owner
            fresh._rebound = {}
            self._rebound[owner] = found = fresh
        return found

    @property
    def entity(self) -> type[Any]:
        if self.owner is None:
            raise DefinitionError(
                f"@{self.kind} {self.fn.__qualname__} is not defined on an Entity class"
            )
        return self.owner

    def arguments(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The call's arguments by name (positional ones bound in declaration order)."""
        if len(args) > len(self._params):
            raise InvalidArgumentsError(
                f"{self._qualname()} takes at most {len(self._params)} arguments, "
                f"got {len(args)} positional"
            )
        named = {p.name: v for p, v in zip(self._params, args, strict=False)}
        clash = named.keys() & kwargs.keys()
        if clash:
            raise InvalidArgumentsError(
                f"{self._qualname()} got {sorted(clash)} both by position and by name"
            )
        return {**named, **kwargs}

    def bind(self, *args: P.args, **kwargs: P.kwargs) -> dict[str, Any]:
        """The call's arguments by name, checked against the handler's signature by mypy."""
        return self.arguments(args, kwargs)

    def _qualname(self) -> str:
        owner = self.owner.__name__ if self.owner is not None else "?"
        return f"{owner}.{self.name}"

    def _with(self, **changes: Any) -> Self:
        other = copy.copy(self)
        other.call_options = replace(self.call_options, **changes)
        return other

    def __repr__(self) -> str:
        return f"<{self.kind} {self._qualname()}>"


class Command(Handler[P, R]):
    """A command handler reference; call options via :meth:`options`."""

    kind: HandlerKind = "command"

    def options(
        self,
        *,
        timeout: float | None = None,
        command_id: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> Command[P, R]:
        """The same handler, called with these options (a new reference; this one is kept)."""
        if command_id is not None and not 0 < len(command_id) <= COMMAND_ID_MAX_LENGTH:
            raise InvalidArgumentsError(
                f"command_id must be 1 to {COMMAND_ID_MAX_LENGTH} characters, got "
                f"{len(command_id)}; a longer key can be hashed to one"
            )
        return self._with(timeout=timeout, command_id=command_id, retry=retry)


class Query(Handler[P, R]):
    """A query handler reference; :meth:`at` reads an older version."""

    kind: HandlerKind = "query"

    def at(self, version: int) -> Query[P, R]:
        """The same query, evaluated on the state as it was at ``version``."""
        return self._with(version=version)


def _check_parameters(fn: Callable[..., Any], what: str, skip: int) -> None:
    if not inspect.isfunction(fn):
        raise DefinitionError(f"@{what} decorates plain methods, got {fn!r}")
    if inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn):
        raise DefinitionError(
            f"@{what} {fn.__qualname__} must be a plain synchronous method: handlers run "
            "inside a worker's batch and must not wait on I/O (use a workflow activity)"
        )
    params = list(inspect.signature(fn).parameters.values())
    if not params or params[0].name != "self":
        raise DefinitionError(f"@{what} {fn.__qualname__} must be a method taking self first")
    if skip == 2 and (
        len(params) < 2
        or params[1].kind
        not in (
            params[1].POSITIONAL_ONLY,
            params[1].POSITIONAL_OR_KEYWORD,
        )
    ):
        raise DefinitionError(
            f"@{what} {fn.__qualname__} must take (self, ctx: CommandContext, ...): the "
            "context is how a command records events"
        )
    for p in params[skip:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise DefinitionError(
                f"@{what} {fn.__qualname__}: *{p.name} is not allowed; every argument "
                "must be named and typed so it can be validated and documented"
            )
        if p.kind is p.POSITIONAL_ONLY:
            raise DefinitionError(
                f"@{what} {fn.__qualname__}: argument {p.name!r} is positional-only; "
                "arguments arrive by name"
            )
        if p.annotation is inspect.Parameter.empty:
            raise DefinitionError(
                f"@{what} {fn.__qualname__}: argument {p.name!r} needs a type annotation"
            )
        if p.name.startswith("_"):
            raise DefinitionError(
                f"@{what} {fn.__qualname__}: argument names may not start with '_'"
            )


CommandFn = Callable[Concatenate[Any, CommandContext, P], R]
QueryFn = Callable[Concatenate[Any, P], R]


@overload
def command(fn: CommandFn[P, R], /) -> Command[P, R]: ...
@overload
def command(*, name: str) -> Callable[[CommandFn[P, R]], Command[P, R]]: ...
def command(fn: Any = None, /, *, name: str | None = None) -> Any:
    """Mark ``def m(self, ctx: CommandContext, **args) -> R`` as a command (``name`` for
    URLs and messages; default: the method's name)."""
    if fn is None:
        return lambda f: Command(f, name, skip=2)
    return Command(fn, name, skip=2)


@overload
def query(fn: QueryFn[P, R], /) -> Query[P, R]: ...
@overload
def query(*, name: str) -> Callable[[QueryFn[P, R]], Query[P, R]]: ...
def query(fn: Any = None, /, *, name: str | None = None) -> Any:
    """Mark ``def m(self, **args) -> R`` as a read-only query of the state."""
    if fn is None:
        return lambda f: Query(f, name, skip=1)
    return Query(fn, name, skip=1)


def apply(fn: F) -> F:
    """Mark a method ``(self, event: SomeEvent) -> None`` as the way SomeEvent changes state."""
    _check_parameters(fn, "apply", 1)
    params = list(inspect.signature(fn).parameters.values())
    if len(params) != 2:
        raise DefinitionError(
            f"@apply {fn.__qualname__} must take exactly (self, event: SomeEvent)"
        )
    setattr(fn, APPLY_ATTR, True)
    return fn
