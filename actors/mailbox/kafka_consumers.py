"""The worker side of the Kafka mailbox: group members on the commands and activity topics.

Kafka decides which partitions a worker owns. These members make the decision reach the
worker on its own thread, and start a join afresh when kafka-python leaves it unanswered
(after the broker went away).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Protocol

from pydantic import ValidationError

from actors.envelopes import Envelope
from actors.errors import MailboxUnavailableError
from actors.mailbox.protocol import Delivery, PartitionListener
from eventstore.kafka.group_consumer import GroupConsumer
from eventstore.kafka.io import BrokerUnavailableError, KafkaRecord, KafkaSettings


class _Topics(Protocol):
    commands: str
    activities: str


class OwningMailbox(Protocol):
    """What the members need of the mailbox they belong to (``actors.mailbox.kafka``)."""

    @property
    def settings(self) -> KafkaSettings: ...

    @property
    def topics(self) -> _Topics: ...

    def ensure_topics(self) -> None: ...

    def refresh_identity(self) -> None: ...


log = logging.getLogger("entityflow.mailbox")
STUCK_JOIN_SECONDS = 30.0
"""How long a worker waits for its group join to settle before it joins afresh."""


def decode_record(record: KafkaRecord, *, keyed_by_address: bool = True) -> Delivery:
    try:
        envelope = Envelope.decode(record.value)
    except (ValidationError, ValueError) as exc:
        return Delivery(record.partition, record.offset, record.value, None, f"undecodable: {exc}")
    if keyed_by_address and record.key is not None and record.key != envelope.address.encode():
        return Delivery(
            record.partition,
            record.offset,
            record.value,
            None,
            f"record key {record.key!r} does not match the envelope address {envelope.address!r}",
        )
    return Delivery(record.partition, record.offset, record.value, envelope)


class KafkaMailboxConsumer:
    """The worker group's view of the commands topic."""

    def __init__(
        self,
        mailbox: OwningMailbox,
        group: str,
        listener: PartitionListener,
        instance_id: str | None = None,
    ) -> None:
        self._mailbox = mailbox
        self._listener = listener
        self._consumer = GroupConsumer(
            mailbox.settings, mailbox.topics.commands, group, instance_id=instance_id, freshen=True
        )
        self._last_heal = time.monotonic()

    def poll(self, timeout: float, max_records: int) -> list[Delivery]:
        records = self._consumer.poll(timeout, max_records)
        changed: set[int] = set()
        for change in self._consumer.take_rebalances():
            if change.revoked:
                self._listener.on_revoked(change.revoked)
                changed.update(change.revoked)
            if change.assigned:
                self._mailbox.refresh_identity()
                self._listener.on_assigned(change.assigned)
                changed.update(change.assigned)
        if not records:
            self._heal()
        # Records of partitions whose owner changed during this poll were fetched from
        # a position nobody chose; they are read again from the tracked position.
        return [decode_record(r) for r in records if r.partition not in changed]

    def _heal(self) -> None:
        """While idle, make sure the topics exist (the broker may have lost its data).

        A member whose join has gone unanswered for :data:`STUCK_JOIN_SECONDS` (seen
        with a broker that restarted empty: the client keeps waiting for a coordinator
        that its old connection will never name) leaves and joins again with a fresh
        client. A member whose join was answered with no partitions is left alone: with
        more workers than partitions some must idle, and rejoining would only cause
        rebalances.
        """
        now = time.monotonic()
        if now - self._last_heal < 5.0:
            return
        self._last_heal = now
        try:
            self._mailbox.ensure_topics()
        except BrokerUnavailableError as exc:
            log.warning("cannot (re)create topics: %s", exc)
        waited = self._consumer.joining_for()
        if waited <= 0:
            return
        state = self._consumer.group_state()
        log.info("no partitions yet: the group join is unanswered after %.0fs (%s)", waited, state)
        if waited >= STUCK_JOIN_SECONDS:
            log.warning("group join unanswered for %.0fs; joining again", waited)
            self._rejoin()

    def _rejoin(self) -> None:
        try:
            self._consumer.rejoin()
        except BrokerUnavailableError as exc:
            log.warning("cannot rejoin the group: %s", exc)

    def seek(self, partition: int, offset: int) -> None:
        self._consumer.seek(partition, offset)

    def offsets(self, partition: int) -> tuple[int, int]:
        """The partition's first and next offsets, as the broker says now.

        A broker that restarted empty has no topic to say them of until someone puts the
        topics back: this member does so before the caller asks again.
        """
        try:
            return self._consumer.offsets(partition)
        except BrokerUnavailableError as exc:
            try:
                self._mailbox.ensure_topics()
            except BrokerUnavailableError as missing:
                log.warning("cannot (re)create topics: %s", missing)
            raise MailboxUnavailableError(
                f"cannot read the bounds of partition {partition}: {exc}"
            ) from exc

    def log_end(self, partition: int) -> int | None:
        return self._consumer.highwater(partition)

    def close(self) -> None:
        self._consumer.close()


class KafkaTaskConsumer:
    """An activity worker's view of the activity topic; positions committed in Kafka."""

    def __init__(self, mailbox: OwningMailbox, group: str) -> None:
        self._consumer = GroupConsumer(mailbox.settings, mailbox.topics.activities, group)
        self._mailbox = mailbox
        self._owned: set[int] = set()
        self._assigned: list[int] = []
        self._last_heal = time.monotonic()

    def poll(self, timeout: float, max_records: int) -> list[Delivery]:
        records = self._consumer.poll(timeout, max_records)
        for change in self._consumer.take_rebalances():
            self._owned -= set(change.revoked)
            self._owned |= set(change.assigned)
            self._assigned += change.assigned
        if not records and time.monotonic() - self._last_heal > 5.0:
            self._last_heal = time.monotonic()
            try:
                self._mailbox.ensure_topics()
            except BrokerUnavailableError as exc:
                log.warning("cannot (re)create topics: %s", exc)
        # A newly assigned partition is fetched from the group's committed offset, which
        # is the position this log keeps: unlike an entity worker's, nothing to seek.
        return [decode_record(r, keyed_by_address=False) for r in records]

    def take_assigned(self) -> list[int]:
        assigned, self._assigned = self._assigned, []
        return assigned

    def commit(self, offsets: Mapping[int, int]) -> None:
        owned = {p: o for p, o in offsets.items() if p in self._owned}
        if not owned:
            return
        try:
            self._consumer.commit(owned)
        except BrokerUnavailableError as exc:
            # Lost to a rebalance or an outage: those tasks may run again (at least once).
            log.warning("could not commit activity offsets %s: %s", owned, exc)

    def pause(self) -> None:
        self._consumer.pause_all()

    def resume(self) -> None:
        self._consumer.resume_all()

    def wake(self) -> None:
        """Nothing: kafka-python's poll cannot be interrupted from another thread. It ends
        when the broker answers the fetch in flight (``fetch_max_wait_ms``) or at its
        timeout, whichever is first."""

    def close(self) -> None:
        self._consumer.close()


__all__ = [
    "STUCK_JOIN_SECONDS",
    "KafkaMailboxConsumer",
    "KafkaTaskConsumer",
    "decode_record",
]
