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
from typing import Any, Protocol

from actors.envelopes import Envelope
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


class PartitionListener(Protocol):
    """Told when this consumer gains or loses partitions (from inside ``poll``)."""

    def on_assigned(self, partitions: list[int]) -> None: ...

    def on_revoked(self, partitions: list[int]) -> None: ...


class MailboxConsumer(Protocol):
    """A member of the worker group that owns some partitions of the commands topic."""

    def poll(self, timeout: float, max_records: int) -> list[Delivery]: ...

    def seek(self, partition: int, offset: int) -> None: ...

    def offsets(self, partition: int) -> tuple[int, int]:
        """(first offset still in the log, next offset to be written)."""

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
