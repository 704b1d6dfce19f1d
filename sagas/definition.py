"""A workflow type: its name, input and output types, signals, run function and queries.

A definition is an explicit object, registered by passing it to the runtime and the
client; nothing is found through a global registry::

    order = Workflow("Order", input=OrderInput, output=OrderResult)
    shipped = order.signal("shipped", Shipment)  # a typed signal reference

    @order.run
    async def place_order(ctx: WorkflowContext, order_input: OrderInput) -> OrderResult:
        shipment = await ctx.wait_signal(shipped)  # a Shipment
        return OrderResult(order_id=ctx.workflow_id, tracking=shipment.tracking)

    @order.query
    def stage(view: WorkflowView) -> str:
        return str(view.memo.get("stage", "started"))

Decorators check the function's shape when the module is imported and return it
unchanged.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from actors import check_entity_id
from eventstore import details, explain
from sagas.errors import InvalidWorkflowInputError, UnknownWorkflowError, WorkflowDefinitionError
from sagas.signals import Signal
from sagas.updates import UpdateSpec, parse_arguments

if TYPE_CHECKING:
    from sagas.context import WorkflowContext
    from sagas.status import WorkflowView

I = TypeVar("I", bound=BaseModel)  # noqa: E741 - the conventional name of an input type
O = TypeVar("O")  # noqa: E741 - the conventional name of an output type
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

WORKFLOW_PREFIX = "workflow:"
MAX_WORKFLOW_ID = 100
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,63}$")
_HANDLER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


_errors = details
_explain = explain


@dataclass(frozen=True)
class QuerySpec:
    """One workflow query: a read-only function of the execution's view."""

    name: str
    fn: Callable[..., Any]
    args_model: type[BaseModel]
    result_adapter: TypeAdapter[Any]
    doc: str

    def parse(self, args: Mapping[str, Any] | None) -> BaseModel:
        return parse_arguments(f"query {self.name}", self.args_model, args)

    def evaluate(self, view: WorkflowView, args: Mapping[str, Any] | None) -> Any:
        parsed = self.parse(args)
        value = self.fn(view, **dict(parsed))
        return self.result_adapter.dump_python(value, mode="json")


class Workflow(Generic[I, O]):
    """A workflow type. ``name`` appears in addresses (``workflow:<name>/<id>``) and URLs."""

    @overload
    def __init__(
        self: Workflow[I, None],
        name: str,
        *,
        input: type[I],
        output: None = None,
        description: str = "",
    ) -> None: ...
    @overload
    def __init__(
        self: Workflow[I, O],
        name: str,
        *,
        input: type[I],
        output: type[O],
        description: str = "",
    ) -> None: ...
    def __init__(
        self,
        name: str,
        *,
        input: type[I],
        output: Any = None,
        description: str = "",
    ) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise WorkflowDefinitionError(
                f"workflow name {name!r} must be a letter followed by letters, digits, '_' "
                "or '.' (at most 64)"
            )
        if not (isinstance(input, type) and issubclass(input, BaseModel)):
            raise WorkflowDefinitionError(
                f"workflow {name}: input must be a pydantic model class, got {input!r}"
            )
        self.name = name
        self.type_name = f"{WORKFLOW_PREFIX}{name}"
        self.input_type: type[I] = input
        self.output_type: Any = output
        self.description = description
        try:
            self._output = TypeAdapter(output if output is not None else type(None))
        except Exception as exc:
            raise WorkflowDefinitionError(f"workflow {name}: {exc}") from exc
        self.signals: dict[str, Signal[Any]] = {}
        self._run: Callable[[WorkflowContext, I], Awaitable[O]] | None = None
        self.queries: dict[str, QuerySpec] = {}
        self.updates: dict[str, UpdateSpec] = {}

    def __repr__(self) -> str:
        return f"Workflow({self.name!r})"

    # -- declarations ----------------------------------------------------------------

    @overload
    def signal(self, name: str) -> Signal[None]: ...
    @overload
    def signal(self, name: str, payload: type[T]) -> Signal[T]: ...
    @overload
    def signal(self, name: str, payload: Any) -> Signal[Any]: ...
    def signal(self, name: str, payload: Any = None) -> Signal[Any]:
        """Declare a signal this workflow takes (its payload type; none by default)."""
        if not isinstance(name, str) or not _HANDLER.match(name):
            raise WorkflowDefinitionError(
                f"workflow {self.name}: signal name {name!r} must be a letter followed by "
                "up to 63 letters, digits or underscores"
            )
        if name in self.signals:
            raise WorkflowDefinitionError(f"workflow {self.name} has two signals {name!r}")
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(payload if payload is not None else type(None))
        except Exception as exc:
            raise WorkflowDefinitionError(f"workflow {self.name}: signal {name}: {exc}") from exc
        declared: Signal[Any] = Signal(self.name, name, payload, adapter)
        self.signals[name] = declared
        return declared

    def run(
        self, fn: Callable[[WorkflowContext, I], Awaitable[O]]
    ) -> Callable[[WorkflowContext, I], Awaitable[O]]:
        """Mark ``async def run(ctx, input)`` as this workflow's orchestration code."""
        if not inspect.iscoroutinefunction(fn):
            raise WorkflowDefinitionError(
                f"@{self.name}.run {getattr(fn, '__qualname__', fn)!r} must be an `async def` "
                "taking (ctx, input)"
            )
        params = list(inspect.signature(fn).parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        required_kw = [
            p for p in params if p.kind is p.KEYWORD_ONLY and p.default is inspect.Parameter.empty
        ]
        if len(positional) != 2 or required_kw or any(p.kind is p.VAR_POSITIONAL for p in params):
            raise WorkflowDefinitionError(
                f"@{self.name}.run {fn.__qualname__} must take exactly two arguments, (ctx, input)"
            )
        if self._run is not None and self._run is not fn:
            raise WorkflowDefinitionError(f"workflow {self.name} already has a run function")
        self._run = fn
        return fn

    @overload
    def query(self, fn: F, /) -> F: ...
    @overload
    def query(self, fn: None = None, /, *, name: str | None = None) -> Callable[[F], F]: ...
    def query(self, fn: Any = None, /, *, name: str | None = None) -> Any:
        """Mark ``def q(view, **args) -> T`` as a read-only query of this workflow."""
        if fn is None:
            return lambda f: self._add_query(f, name)
        return self._add_query(fn, name)

    def _add_query(self, fn: F, name: str | None) -> F:
        query_name, args_model, result, doc = self._handler_parts("query", fn, name)
        if query_name in self.queries:
            raise WorkflowDefinitionError(f"workflow {self.name} has two queries {query_name!r}")
        self.queries[query_name] = QuerySpec(
            name=query_name, fn=fn, args_model=args_model, result_adapter=result, doc=doc
        )
        return fn

    @overload
    def update(self, fn: F, /) -> F: ...
    @overload
    def update(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        validator: Callable[..., None] | None = None,
    ) -> Callable[[F], F]: ...
    def update(
        self,
        fn: Any = None,
        /,
        *,
        name: str | None = None,
        validator: Callable[..., None] | None = None,
    ) -> Any:
        """Mark ``def u(view, **args) -> T`` as an update: it may change ``view.memo`` and
        returns its result to the caller. ``validator(view, **args)`` raises to refuse an
        update before anything is recorded."""
        if fn is None:
            return lambda f: self._add_update(f, name, validator)
        return self._add_update(fn, name, validator)

    def _add_update(self, fn: F, name: str | None, validator: Callable[..., None] | None) -> F:
        update_name, args_model, result, doc = self._handler_parts("update", fn, name)
        if update_name in self.updates:
            raise WorkflowDefinitionError(f"workflow {self.name} has two updates {update_name!r}")
        if validator is not None and not callable(validator):
            raise WorkflowDefinitionError(
                f"@{self.name}.update {update_name}: validator must be a function of the view"
            )
        self.updates[update_name] = UpdateSpec(
            name=update_name,
            fn=fn,
            args_model=args_model,
            result_adapter=result,
            validator=validator,
            doc=doc,
        )
        return fn

    def _handler_parts(
        self, kind: str, fn: Callable[..., Any], name: str | None
    ) -> tuple[str, type[BaseModel], TypeAdapter[Any], str]:
        """A query's or update's name, argument model, result adapter and doc, from the
        function's signature (the first argument is the view)."""
        if not inspect.isfunction(fn) or inspect.iscoroutinefunction(fn):
            raise WorkflowDefinitionError(
                f"@{self.name}.{kind} {fn!r} must be a plain (synchronous) function of the view"
            )
        handler_name = name or fn.__name__
        if not _HANDLER.match(handler_name):
            raise WorkflowDefinitionError(
                f"{kind} name {handler_name!r} must be a letter followed by up to 63 letters, "
                "digits or underscores"
            )
        params = list(inspect.signature(fn).parameters.values())
        if not params or params[0].kind not in (
            params[0].POSITIONAL_ONLY,
            params[0].POSITIONAL_OR_KEYWORD,
        ):
            raise WorkflowDefinitionError(
                f"@{self.name}.{kind} {fn.__qualname__} must take the view as its first argument"
            )
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except (NameError, TypeError) as exc:
            raise WorkflowDefinitionError(
                f"cannot resolve the annotations of {fn.__qualname__}: {exc}"
            ) from exc
        fields: dict[str, Any] = {}
        for p in params[1:]:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name not in hints:
                raise WorkflowDefinitionError(
                    f"@{self.name}.{kind} {fn.__qualname__}: argument {p.name!r} must be named "
                    "and typed"
                )
            default = ... if p.default is inspect.Parameter.empty else p.default
            fields[p.name] = (hints[p.name], default)
        if "return" not in hints:
            raise WorkflowDefinitionError(
                f"@{self.name}.{kind} {fn.__qualname__} needs a return annotation"
            )
        args_model = create_model(
            f"{self.name.replace('.', '_')}_{handler_name}_{kind}_args",
            __config__=ConfigDict(extra="forbid"),
            **fields,
        )
        doc = inspect.cleandoc(fn.__doc__ or "")
        return handler_name, args_model, TypeAdapter(hints["return"]), doc

    # -- what the engine, the coordinator and the client use --------------------------

    @property
    def run_fn(self) -> Callable[[WorkflowContext, I], Awaitable[O]]:
        if self._run is None:
            raise WorkflowDefinitionError(
                f"workflow {self.name} has no run function; decorate one with @<workflow>.run"
            )
        return self._run

    def check(self) -> None:
        """Raise unless the definition is complete (called when it is registered)."""
        _ = self.run_fn

    def address(self, workflow_id: str) -> str:
        check_entity_id(workflow_id)
        if len(workflow_id) > MAX_WORKFLOW_ID:
            raise InvalidWorkflowInputError(
                f"workflow id {workflow_id[:20]!r}... is longer than {MAX_WORKFLOW_ID} characters"
            )
        return f"{self.type_name}/{workflow_id}"

    def parse_input(self, data: Any) -> I:
        if isinstance(data, self.input_type):
            return data
        try:
            return self.input_type.model_validate(data)
        except ValidationError as exc:
            raise InvalidWorkflowInputError(
                f"invalid input for workflow {self.name}: {_explain(exc)}", _errors(exc)
            ) from exc

    def encode_input(self, data: Any) -> Any:
        return self.parse_input(data).model_dump(mode="json")

    def encode_output(self, value: Any) -> Any:
        return self._output.dump_python(value, mode="json")

    def decode_output(self, data: Any) -> O:
        return typing.cast(O, self._output.validate_python(data))

    def signal_named(self, name: str) -> Signal[Any]:
        """A declared signal by name (the HTTP edge and the coordinator)."""
        found = self.signals.get(name)
        if found is None:
            raise UnknownWorkflowError(
                f"workflow {self.name} has no signal named {name!r}; its signals are: "
                + (", ".join(sorted(self.signals)) or "(none; declare them with .signal(...))")
            )
        return found

    def signal_adapter(self, name: str) -> TypeAdapter[Any]:
        return self.signal_named(name).adapter

    def encode_signal(self, name: str, payload: Any) -> Any:
        return self.signal_named(name).encode(payload)

    def decode_signal(self, name: str, payload: Any) -> Any:
        return self.signal_adapter(name).validate_python(payload)

    def update_spec(self, name: str) -> UpdateSpec:
        spec = self.updates.get(name)
        if spec is None:
            raise UnknownWorkflowError(
                f"workflow {self.name} has no update named {name!r}; its updates are: "
                + (", ".join(sorted(self.updates)) or "(none)")
            )
        return spec

    def query_spec(self, name: str) -> QuerySpec:
        spec = self.queries.get(name)
        if spec is None:
            raise UnknownWorkflowError(
                f"workflow {self.name} has no query named {name!r}; its queries are: "
                + (", ".join(sorted(self.queries)) or "(none)")
            )
        return spec


AnyWorkflow = Workflow[Any, Any]


def split_address(address: str) -> tuple[str, str]:
    """``workflow:Order/o-1`` -> ``("Order", "o-1")``."""
    type_name, _, workflow_id = address.partition("/")
    return type_name.removeprefix(WORKFLOW_PREFIX), workflow_id
