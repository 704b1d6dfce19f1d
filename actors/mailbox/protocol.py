"""The mailbox seam: how envelopes are sent, consumed by partition, and replied to.

Two implementations share these protocols and one contract test suite: the Kafka
mailbox (production, and every guarantee's proof) and the in-memory mailbox (fast unit
tests). Positions are named ``<mailbox name>#<partition>``; the worker tracks them in
the event store, never in the broker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from actors.envelopes import ACTOR_ROUTE, Envelope
from actors.errors import AlreadyRedrivenError, NotRedrivableError
from eventstore import Outcome

ACTIVITY_ROUTE = "activity:"
"""The address prefix of an activity task: such envelopes go to the activity log, read by
activity workers, never to an actor."""

LOCAL_OFFSET = -1
"""The offset of a delivery that did not come through the broker (see ``local_delivery``)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message read from one partition; ``envelope`` is None if it could not be decoded."""

    partition: int
    offset: int
    raw: bytes
    envelope: Envelope | None
    error: str | None = None

    @property
    def local(self) -> bool:
        """Handed over inside the worker: it has no offset, and moves no position."""
        return self.offset == LOCAL_OFFSET


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """One parked message as an operator sees it: what it was, why, and whether it was sent again.

    ``id`` is ``<partition>-<offset>`` in the dead-letter log: stable, and what the
    cursor of a listing and a re-drive name. ``envelope`` is None when the parked bytes
    were never an envelope (nothing to re-drive then).
    """

    id: str
    raw: bytes
    envelope: Envelope | None
    error: str
    source: str
    at: datetime
    redriven_at: datetime | None = None
    key: str | None = None
    """The record key (the address) for bytes that did not decode."""

    @property
    def address(self) -> str:
        return self.envelope.address if self.envelope is not None else (self.key or "")

    @property
    def entity_type(self) -> str:
        return self.address.split("/", 1)[0] if "/" in self.address else ""

    @property
    def entity_id(self) -> str:
        return self.address.split("/", 1)[1] if "/" in self.address else ""

    @property
    def command(self) -> str:
        return self.envelope.name if self.envelope is not None else ""

    @property
    def command_id(self) -> str | None:
        return self.envelope.command_id if self.envelope is not None else None


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    """Dead letters in log order; ``next_after`` continues the listing (None: the last page)."""

    dead_letters: list[DeadLetterRecord]
    next_after: str | None


def dead_letter_id(partition: int, offset: int) -> str:
    return f"{partition}-{offset}"


def parse_dead_letter_id(value: str) -> tuple[int, int]:
    """``"0-17"`` -> ``(0, 17)``; anything else is a ValueError that says what an id is."""
    partition, sep, offset = value.partition("-")
    if not sep or not partition.isdigit() or not offset.isdigit() or len(value) > 40:
        raise ValueError(
            f"{value!r} is not a dead letter id (they look like 0-17: partition-offset)"
        )
    return int(partition), int(offset)


def redrive_refusal(record: DeadLetterRecord) -> NotRedrivableError | None:
    """Why a dead letter cannot be sent again (None: it can).

    Re-driven already: its command's outcome tells how that went. Bytes that were never
    an envelope: nothing to send. A command a workflow sent: the workflow took its
    failure already, and applying it now would happen behind the workflow's back.
    """
    env = record.envelope
    if record.redriven_at is not None:
        return AlreadyRedrivenError(
            record.id,
            f"it was re-driven at {record.redriven_at.isoformat()}; its command's outcome "
            "says how that went",
            record.command_id,
        )
    if env is None:
        return NotRedrivableError(record.id, "its bytes are not a message (undecodable)")
    if env.kind != "reply" and env.reply_to and env.reply_to.startswith(ACTOR_ROUTE):
        return NotRedrivableError(
            record.id,
            f"it was sent by {env.reply_to[len(ACTOR_ROUTE) :]}, which already took its "
            "failure; repair it through that workflow (cancel, or retry its compensation)",
            env.command_id,
        )
    return None


def redrive_envelope(record: DeadLetterRecord) -> Envelope:
    """The parked envelope as it is sent again: same command id, marked as a re-drive.

    The original caller's reply route is dropped (that request is long over; the outcome
    is stored under the command id), and so is a timer id (the firing's timer row was
    cleared when it crashed; a timer set again since under that id must not be cleared).
    Raises :func:`redrive_refusal`'s error for a dead letter that cannot be sent again.
    """
    refusal = redrive_refusal(record)
    if refusal is not None:
        raise refusal
    assert record.envelope is not None
    return record.envelope.model_copy(
        update={"reply_to": None, "timer": None, "redrive": record.id}
    )


class PartitionListener(Protocol):
    """Told when this consumer gains or loses partitions (from inside ``poll``)."""

    def on_assigned(self, partitions: list[int]) -> None: ...

    def on_revoked(self, partitions: list[int]) -> None: ...


class MailboxConsumer(Protocol):
    """A member of the worker group that owns some partitions of the commands topic."""

    def poll(self, timeout: float, max_records: int) -> list[Delivery]: ...

    def seek(self, partition: int, offset: int) -> None: ...

    def offsets(self, partition: int) -> tuple[int, int]:
        """(first offset still in the log, next offset to be written); raises
        :class:`~actors.errors.MailboxUnavailableError` while the broker cannot say."""

    def log_end(self, partition: int) -> int | None:
        """The partition's end as the last fetch saw it, without a round trip (None
        before the first fetch): what the lag metric compares the read position with."""

    def close(self) -> None: ...


class ReplyChannel(Protocol):
    """Where a caller waits for replies to the commands it sent."""

    @property
    def route(self) -> str:
        """The value to put into ``Envelope.reply_to``."""

    def expect(self, command_id: str) -> Future[Outcome[Any]]:
        """Register interest before sending, so a fast reply is not missed."""

    def forget(self, command_id: str) -> None: ...

    def close(self) -> None: ...


def is_activity_task(envelope: Envelope) -> bool:
    return envelope.address.startswith(ACTIVITY_ROUTE)


class TaskConsumer(Protocol):
    """A member of an activity worker group, reading the activity log.

    Unlike an entity worker (which tracks positions in the store, with its effects), an
    activity worker commits its position in the log itself, once a task has been run
    and answered: a task runs at least once, and each attempt carries an idempotency key.
    """

    def poll(self, timeout: float, max_records: int) -> list[Delivery]: ...

    def take_assigned(self) -> list[int]:
        """Partitions (re)assigned since the last call: reading restarts at their commit."""

    def commit(self, offsets: Mapping[int, int]) -> None:
        """Record, per partition, the offset of the next task to run (what is done before
        it is never read again by this group); ignores partitions no longer owned."""

    def pause(self) -> None:
        """Stop fetching (every worker thread busy) while staying in the group."""

    def resume(self) -> None: ...

    def wake(self) -> None:
        """Let a poll waiting on another thread return early (its loop is being stopped);
        a consumer that cannot interrupt its wait returns when the wait ends."""

    def close(self) -> None: ...


class Mailbox(Protocol):
    """Durable, partitioned delivery of envelopes keyed by address."""

    @property
    def name(self) -> str:
        """Stable name of the commands log, the prefix of tracked position names."""

    @property
    def partitions(self) -> int: ...

    def partition_of(self, address: str) -> int:
        """The partition every message to ``address`` goes to."""

    def send(self, envelope: Envelope) -> Future[None]:
        """Queue an envelope; the future resolves once the log has durably accepted it."""

    def send_replies(self, route: str, replies: Sequence[Outcome[Any]]) -> None:
        """Deliver replies to one reply channel's route (best effort; outcomes are stored).

        A worker hands over all replies of a batch for one route at once, so they can
        travel as one message: under load that is one record per API node per batch.
        """

    def dead_letter(self, delivery: Delivery, error: str) -> Future[None]:
        """Park an unprocessable message with its error, so its partition keeps flowing."""

    def list_dead_letters(self, after: str | None = None, limit: int = 100) -> DeadLetterPage:
        """Parked messages in log order, from just after the id ``after`` (the start: None)."""

    def dead_letter_at(self, dead_letter_id: str) -> DeadLetterRecord:
        """One parked message (:class:`~actors.errors.UnknownDeadLetterError` if none)."""

    def redrive(self, dead_letter_id: str) -> DeadLetterRecord:
        """Send a parked message back to its actor, once; returns it marked re-driven.

        The worker runs a re-driven command again only while its stored outcome is
        ``dead_lettered``, so however often it arrives it is applied once. A second
        re-drive is refused (:class:`~actors.errors.AlreadyRedrivenError`).
        """

    def flush(self, timeout: float | None = None) -> None: ...

    def reply_channel(self) -> ReplyChannel: ...

    def consumer(
        self, group: str, listener: PartitionListener, *, instance_id: str | None = None
    ) -> MailboxConsumer:
        """Join ``group``; ``instance_id`` is a stable identity across restarts, if any."""

    def task_consumer(self, group: str) -> TaskConsumer:
        """Join ``group`` of activity workers, reading the activity log."""

    def close(self) -> None: ...


def position_name(mailbox: Mailbox, partition: int) -> str:
    return f"{mailbox.name}#{partition}"
