"""Workflow updates: a caller changes a running execution's state and gets a result back.

An update handler is declared on the workflow (``@order.update``), like a query, but it
may change ``view.memo``; the workflow's code reacts with ``await ctx.wait_condition(...)``
on the memo. It runs in three steps so that a refused update leaves no trace:

1. its arguments are checked (pydantic), then its ``validator`` (which raises to refuse);
2. the handler is tried on a copy of the memo: if it raises, the update is refused;
3. only then is ``wf.UpdateAccepted`` recorded and the handler run on the real memo; the
   result is recorded too (``wf.UpdateCompleted``) and returned to the caller.

Handlers and validators are deterministic workflow code: synchronous, no I/O, no clock,
run again on replay. An update that needs a side effect changes the memo and lets the
workflow's code run an activity.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from eventstore import details, explain
from sagas.errors import InvalidWorkflowInputError, SagasError

if TYPE_CHECKING:
    from sagas.status import WorkflowView

__all__ = ["UpdateRefusedError", "UpdateSpec", "parse_arguments"]


class UpdateRefusedError(SagasError):
    """The validator or the handler refused the update; nothing was recorded."""


def parse_arguments(what: str, model: type[BaseModel], args: Mapping[str, Any] | None) -> BaseModel:
    """A query's or update's arguments checked by its model; a clear error if not."""
    try:
        return model.model_validate(dict(args or {}))
    except ValidationError as exc:
        raise InvalidWorkflowInputError(
            f"invalid arguments for {what}: {explain(exc)}", details(exc)
        ) from exc


@dataclass(frozen=True)
class UpdateSpec:
    """One update of a workflow type: its handler, arguments, result and validator."""

    name: str
    fn: Callable[..., Any]
    args_model: type[BaseModel]
    result_adapter: TypeAdapter[Any]
    validator: Callable[..., None] | None
    doc: str

    def parse(self, args: Mapping[str, Any] | None) -> BaseModel:
        return parse_arguments(f"update {self.name}", self.args_model, args)

    def rehearse(self, view: WorkflowView, args: BaseModel) -> None:
        """Steps 1 and 2: the validator, then the handler on a copy of the memo; raises
        :class:`UpdateRefusedError` with the reason, and changes nothing."""
        values = dict(args)
        try:
            if self.validator is not None:
                self.validator(view, **values)
            rehearsal = replace(view, memo=copy.deepcopy(view.memo))
            self.result_adapter.dump_python(self.fn(rehearsal, **values), mode="json")
        except Exception as exc:
            raise UpdateRefusedError(f"update {self.name} refused: {exc}") from exc

    def apply(self, view: WorkflowView, args: Mapping[str, Any]) -> Any:
        """Step 3: the handler on the execution's own memo; the result in JSON form."""
        parsed = self.parse(args)
        return self.result_adapter.dump_python(self.fn(view, **dict(parsed)), mode="json")
