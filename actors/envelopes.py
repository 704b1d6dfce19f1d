"""Messages that travel through the mailbox: envelopes to actors, and their replies.

An envelope is addressed to one actor (``Type/id``, or ``workflow:Type/id``); the address
is the Kafka record key, so all messages of one actor share a partition and keep their
order. ``kind`` says what it is: a ``command`` to an entity, a workflow ``signal``, a
``control`` message of a workflow's life (start, cancel, ...), or a ``reply`` to an actor
that made a call. ``reply_to`` is an opaque route the mailbox understands (a reply topic
of an API node, an in-process channel, or another actor's address ``actor:<address>``);
a command without one is a signal (fire and forget), with one an update. The reply is
the command's :class:`~eventstore.Outcome`. ``traceparent`` is the W3C trace context of
the work that sent it (taken from the current span when the envelope is built), so the
work it causes joins the same trace wherever it runs.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from eventstore import Outcome
from eventstore.tracing import traceparent as current_traceparent

EnvelopeKind = Literal["command", "signal", "reply", "control"]
ACTOR_ROUTE = "actor:"
OUTCOMES: TypeAdapter[list[Outcome[Any]]] = TypeAdapter(list[Outcome[Any]])
"""The wire form of a batch of replies to one reply route (a JSON array of outcomes)."""


def new_command_id() -> str:
    return uuid.uuid4().hex


def _now() -> datetime:
    return datetime.now(UTC)


COMMAND_ID_MAX_LENGTH = 200


class Envelope(BaseModel):
    """One message to one actor."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command_id: str = Field(
        default_factory=new_command_id, min_length=1, max_length=COMMAND_ID_MAX_LENGTH
    )
    address: str = Field(min_length=3, max_length=300)
    kind: EnvelopeKind
    name: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)
    reply_to: str | None = None
    correlation: str | None = None
    reply: Outcome[Any] | None = None
    timer: str | None = None
    """The id of the durable timer this message fires (set by the timer index)."""
    redrive: str | None = None
    """The dead letter this message re-drives: the worker runs such a command again while
    its stored outcome is ``dead_lettered`` (and never once it reads anything else)."""
    sent_at: datetime = Field(default_factory=_now)
    traceparent: str | None = Field(default_factory=current_traceparent, max_length=256)
    """The W3C trace context of the span that sent it (None when tracing is off)."""

    @property
    def actor_type(self) -> str:
        return self.address.split("/", 1)[0]

    def encode(self) -> bytes:
        return self.__pydantic_serializer__.to_json(self)

    @classmethod
    def decode(cls, raw: bytes) -> Envelope:
        return cls.model_validate_json(raw)


def reply_envelope(route_address: str, outcome: Outcome[Any], correlation: str | None) -> Envelope:
    """A reply addressed to an actor (a workflow waiting on a call) travels as a message."""
    return Envelope(
        command_id=outcome.command_id,
        address=route_address,
        kind="reply",
        name="reply",
        reply=outcome,
        correlation=correlation,
    )


def prevalidated(
    command_id: str,
    address: str,
    kind: EnvelopeKind,
    name: str,
    args: dict[str, Any],
    reply_to: str | None,
) -> Envelope:
    """An envelope from parts already validated (a route's body, a client's handler
    arguments).

    It is validated once more all the same: pydantic-core's validating constructor
    (3.2 us here) is faster than ``model_construct`` (5.2 us), which fills defaults and
    the fields-set record in Python, and it keeps an envelope from ever holding what its
    model forbids.
    """
    return Envelope(
        command_id=command_id,
        address=address,
        kind=kind,
        name=name,
        args=args,
        reply_to=reply_to,
    )
