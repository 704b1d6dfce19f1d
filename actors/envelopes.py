"""Messages that travel through the mailbox: command envelopes and their replies.

An envelope is addressed to one actor (``Type/id``, or ``workflow:Type/id``); the address
is the Kafka record key, so all messages of one actor share a partition and keep their
order. ``reply_to`` is an opaque route the mailbox understands: a reply topic of an API
node, an in-process channel, or another actor's address (``actor:<address>``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from eventstore import CommandOutcome, OutcomeStatus

EnvelopeKind = Literal["signal", "update", "reply", "control"]
ACTOR_ROUTE = "actor:"


def new_command_id() -> str:
    return uuid.uuid4().hex


def _now() -> datetime:
    return datetime.now(UTC)


class Reply(BaseModel):
    """The outcome of one command, sent to whoever asked for it."""

    model_config = ConfigDict(frozen=True)

    command_id: str
    address: str
    status: OutcomeStatus
    result: Any = None
    version: int | None = None
    error: str | None = None
    correlation: str | None = None

    @classmethod
    def of(cls, outcome: CommandOutcome, correlation: str | None = None) -> Reply:
        """The reply that reports a stored outcome."""
        return cls(
            command_id=outcome.command_id,
            address=outcome.address,
            status=outcome.status,
            result=outcome.result,
            version=outcome.version,
            error=outcome.error,
            correlation=correlation,
        )


class Envelope(BaseModel):
    """One message to one actor."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command_id: str = Field(default_factory=new_command_id, min_length=1, max_length=200)
    address: str = Field(min_length=3, max_length=300)
    kind: EnvelopeKind
    name: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)
    reply_to: str | None = None
    correlation: str | None = None
    reply: Reply | None = None
    sent_at: datetime = Field(default_factory=_now)

    @property
    def actor_type(self) -> str:
        return self.address.split("/", 1)[0]

    def encode(self) -> bytes:
        return self.__pydantic_serializer__.to_json(self)

    @classmethod
    def decode(cls, raw: bytes) -> Envelope:
        return cls.model_validate_json(raw)


def reply_envelope(route_address: str, reply: Reply) -> Envelope:
    """A reply addressed to an actor (a workflow waiting on a call) travels as a message."""
    return Envelope(
        command_id=reply.command_id,
        address=route_address,
        kind="reply",
        name="reply",
        reply=reply,
        correlation=reply.correlation,
    )
