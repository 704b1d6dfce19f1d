"""``@signal``, ``@update``, ``@query`` and ``@apply``: marks on entity methods.

Decorators only mark and check the shape of a method at definition time; they return the
function unchanged. Types are resolved when the entity class is registered (see
``entity.py``), because annotations may name classes defined later in the module.

- a **signal** changes state and answers nothing (HTTP 202);
- an **update** changes state and returns a result (HTTP 200);
- a **query** reads state and must not change it; it never goes through the mailbox;
- an **apply** method folds one event type into the state; it is the only place state
  changes, so replaying the events rebuilds exactly the same state.

Handlers are synchronous on purpose: they run inside a worker's batch, between reading
state and committing events, where waiting on I/O would stall every entity of the
partition. Side effects belong in workflows and activities.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

from actors.errors import DefinitionError

HandlerKind = Literal["signal", "update", "query"]
F = TypeVar("F", bound=Callable[..., Any])

HANDLER_ATTR = "__entityflow_handler__"
APPLY_ATTR = "__entityflow_apply__"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class HandlerMark:
    """What a decorator records on a method, to be completed at registration."""

    kind: HandlerKind
    name: str
    fn: Callable[..., Any]


def _check_parameters(fn: Callable[..., Any], what: str) -> None:
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
    for p in params[1:]:
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


def _mark(kind: HandlerKind, fn: F, name: str | None) -> F:
    _check_parameters(fn, kind)
    handler_name = fn.__name__ if name is None else name
    if not _NAME.match(handler_name):
        raise DefinitionError(
            f"@{kind} name {handler_name!r} must be a letter followed by up to 63 letters, "
            "digits or underscores (it appears in URLs)"
        )
    setattr(fn, HANDLER_ATTR, HandlerMark(kind=kind, name=handler_name, fn=fn))
    return fn


class _HandlerDecorator:
    """``@signal`` / ``@signal(name=...)``, and likewise for update and query."""

    def __init__(self, kind: HandlerKind) -> None:
        self.kind: HandlerKind = kind
        self.__doc__ = f"Mark an entity method as a {kind} (optionally under another name)."

    @overload
    def __call__(self, fn: F, /) -> F: ...
    @overload
    def __call__(self, fn: None = None, /, *, name: str | None = None) -> Callable[[F], F]: ...
    def __call__(self, fn: Any = None, /, *, name: str | None = None) -> Any:
        if fn is None:
            return lambda f: _mark(self.kind, f, name)
        return _mark(self.kind, fn, name)

    def __repr__(self) -> str:
        return f"@{self.kind}"


signal = _HandlerDecorator("signal")
update = _HandlerDecorator("update")
query = _HandlerDecorator("query")


def apply(fn: F) -> F:
    """Mark a method ``(self, event: SomeEvent) -> None`` as the way SomeEvent changes state."""
    _check_parameters(fn, "apply")
    params = list(inspect.signature(fn).parameters.values())
    if len(params) != 2:
        raise DefinitionError(
            f"@apply {fn.__qualname__} must take exactly (self, event: SomeEvent)"
        )
    setattr(fn, APPLY_ATTR, True)
    return fn
