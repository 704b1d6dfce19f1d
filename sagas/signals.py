"""Typed signal references: how workflow code and callers name a signal.

``shipped = order.signal("shipped", Shipment)`` declares it on the workflow;
``await ctx.wait_signal(shipped)`` returns a ``Shipment``; a client sends it with
``workflows.signal(shipped, workflow_id, payload)``. The name appears only at the HTTP
edge (``/workflows/{type}/{id}/signals/{name}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter, ValidationError

from eventstore import details, explain
from sagas.errors import InvalidWorkflowInputError

T = TypeVar("T")


@dataclass(frozen=True)
class Signal(Generic[T]):
    """A signal one workflow type takes, with the type of its payload."""

    workflow_name: str
    name: str
    payload_type: Any
    adapter: TypeAdapter[T]

    def encode(self, payload: Any) -> Any:
        """The JSON form of a payload, validated against the signal's type."""
        try:
            return self.adapter.dump_python(self.adapter.validate_python(payload), mode="json")
        except ValidationError as exc:
            raise InvalidWorkflowInputError(
                f"invalid payload for signal {self.workflow_name}.{self.name}: {explain(exc)}",
                details(exc),
            ) from exc

    def __repr__(self) -> str:
        return f"<signal {self.workflow_name}.{self.name}>"
