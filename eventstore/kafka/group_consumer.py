"""Group membership: the consumer through which Kafka decides which partitions a worker owns.

Ownership is what the single-writer guarantee stands on, so its changes reach the owner
on the owner's own thread (never acted on inside kafka-python's callbacks), and a join
that hangs shows (:meth:`GroupConsumer.joining_for`) and can be started over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.errors import FencedInstanceIdError, KafkaError
from kafka.structs import OffsetAndMetadata

from eventstore.kafka.io import (
    BrokerUnavailableError,
    DuplicateMemberError,
    KafkaRecord,
    KafkaSettings,
    connect,
    records_from,
)
from eventstore.kafka.stuck_calls import STUCK_CALL_SECONDS, WATCHDOG, abandon

log = logging.getLogger("entityflow.kafka")

FRESHEN_WAIT = 0.003
"""Seconds within which a poll counts as answered from records fetched earlier, and that
it then waits for the fetch it sent. A broker with newer records answers in about a
millisecond on loopback; one with none holds the fetch and the wait is lost. W3 sagas/s
rose from 127 and 128 to 154 and 145 (alternated pairs of ``python -m bench sagas
--runs 2``); W1 over HTTP and activities/s were unchanged within noise."""
FRESHEN_AFTER = 0.015
"""Seconds the caller must have spent since its last poll for buffered records to be
worth the wait: after a short cycle they are a few milliseconds old, and waiting cost
the activities bench (10 activities in sequence per workflow, short cycles) about 8% of
its activities/s."""


@dataclass(frozen=True, slots=True)
class Rebalance:
    """A change of ownership that happened during a poll: act on it before the records."""

    revoked: list[int]
    assigned: list[int]


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Runs on kafka-python's IO thread, where calling back into the client can deadlock.

    It only takes note; the owner acts on the change right after the poll returns, and
    seeks before the next fetch (records fetched from any other position are dropped).
    """

    def __init__(self, owner: GroupConsumer) -> None:
        self._owner = owner

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._owner._note(revoked=sorted(tp.partition for tp in revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._owner._note(assigned=sorted(tp.partition for tp in assigned))


class GroupConsumer:
    """A member of a consumer group on one topic; Kafka decides which partitions it owns.

    Changes of ownership are reported by :meth:`take_rebalances` after each poll, on the
    caller's thread, where the owner seeks its new partitions to where it wants to read.

    Rebalancing is cooperative (KIP-429): a member keeps working on the partitions it
    keeps while the group moves the others, instead of every member stopping for every
    join. With ``instance_id`` the member is static (KIP-345): a process that restarts
    under the same identity gets its partitions back at once, without a rebalance; one
    that goes away for good holds them until its session times out.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        group_id: str,
        *,
        instance_id: str | None = None,
        auto_offset_reset: str = "earliest",
        max_poll_records: int = 500,
        stuck_after: float = STUCK_CALL_SECONDS,
        freshen: bool = False,
    ) -> None:
        self.topic = topic
        self.instance_id = instance_id
        self._stuck_after = stuck_after
        self._freshen = freshen
        self._returned_at = time.monotonic()
        self._poll_name = f"the group poll on {topic}"
        self._pending: list[Rebalance] = []
        self._pending_lock = threading.Lock()
        self._joining_since: float | None = time.monotonic()
        self._settings = settings

        def make() -> KafkaConsumer:
            return KafkaConsumer(
                **settings.common(),
                group_id=group_id,
                enable_auto_commit=False,
                metrics_enabled=False,
                auto_offset_reset=auto_offset_reset,
                session_timeout_ms=settings.session_timeout_ms,
                heartbeat_interval_ms=settings.heartbeat_interval_ms,
                max_poll_interval_ms=settings.max_poll_interval_ms,
                fetch_max_wait_ms=settings.fetch_max_wait_ms,
                max_poll_records=max_poll_records,
                partition_assignment_strategy=[CooperativeStickyAssignor],
                group_instance_id=instance_id,
            )

        self._make = make
        self._consumer: KafkaConsumer = connect("group consumer", settings, make)
        self._subscribe()

    def _subscribe(self) -> None:
        """Join once this client's metadata shows the topic's partitions.

        A leader that assigns before it sees them gives every member nothing (the range
        assignor logs "No partition metadata"), and the group can then sit idle.
        """
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            try:
                if self._consumer.partitions_for_topic(self.topic):
                    break
            except KafkaError as exc:
                log.warning("metadata of %s: %s", self.topic, exc)
            time.sleep(0.1)
        self._consumer.subscribe([self.topic], listener=_Listener(self))

    def _note(self, *, revoked: list[int] | None = None, assigned: list[int] | None = None) -> None:
        with self._pending_lock:
            self._pending.append(Rebalance(revoked or [], assigned or []))
            if assigned is not None:
                self._joining_since = None  # even an empty assignment ends the join
            elif self._joining_since is None:
                self._joining_since = time.monotonic()

    def joining_for(self) -> float:
        """Seconds since this member gave up its partitions without an assignment since.

        0 once the group has answered the join (with partitions or with none). Only a
        completed join reports an assignment, so a long wait here is a join that hangs,
        whatever state the client believes it is in.
        """
        since = self._joining_since
        return 0.0 if since is None else time.monotonic() - since

    def take_rebalances(self) -> list[Rebalance]:
        with self._pending_lock:
            pending, self._pending = self._pending, []
        return pending

    def poll(self, timeout: float, max_records: int) -> list[KafkaRecord]:
        """Records of owned partitions, up to ``max_records``, waiting up to ``timeout``.

        kafka-python answers a poll from records an earlier fetch brought, if it has any,
        and returns at once: under load, what reached the broker while the caller worked
        on its last batch then came a batch cycle late (W3: records 49 ms old at the
        worker's poll, in 30 ms cycles). So a poll answered at once, within
        :data:`FRESHEN_WAIT`, with room left asks again for up to that long: the fetch it
        sent comes back with what arrived meanwhile. A poll that waited on the broker
        has fresh records and returns them as before, and so does one after a short
        cycle (:data:`FRESHEN_AFTER`).

        Only for a caller that spends a batch cycle between polls (``freshen``: the
        entity worker); an activity worker is back at its poll within a millisecond,
        and the wait would only delay its tasks.
        """
        asked = time.monotonic()
        worked = asked - self._returned_at  # the caller's batch cycle since the last poll
        records = self._poll_once(timeout, max_records)
        answered_at_once = time.monotonic() - asked < FRESHEN_WAIT
        if (
            self._freshen
            and worked >= FRESHEN_AFTER
            and records
            and answered_at_once
            and len(records) < max_records
        ):
            records += self._poll_once(FRESHEN_WAIT, max_records - len(records))
        self._returned_at = time.monotonic()
        return records

    def _poll_once(self, timeout: float, max_records: int) -> list[KafkaRecord]:
        with WATCHDOG.guard(self._consumer._net, self._poll_name, self._stuck_after) as call:
            try:
                batches = self._consumer.poll(
                    timeout_ms=int(timeout * 1000), max_records=max_records, update_offsets=True
                )
            except FencedInstanceIdError as exc:
                raise DuplicateMemberError(
                    f"another member of the group joined as {self.instance_id!r} and took "
                    "over this one's partitions; give each worker its own ENTITYFLOW_WORKER_ID"
                ) from exc
            except KafkaError as exc:
                log.warning("poll on %s failed: %s", self.topic, exc)
                batches = {}
        if call.tripped:
            self.rejoin(abandon_client=True)
            return []
        return records_from(batches)

    def seek(self, partition: int, offset: int) -> bool:
        """Read ``partition`` from ``offset`` next; False when it is no longer this member's.

        A partition reported assigned can be taken back by the next rebalance before its
        owner gets to seek it (two members joining at once, cooperatively: one round
        hands out, the next takes back). That revocation is reported by the next
        :meth:`take_rebalances`, and a later assignment seeks again, so there is nothing
        to do now; kafka-python would raise ``ValueError('Unassigned partition')``.
        """
        tp = TopicPartition(self.topic, partition)
        if tp not in self._consumer.assignment():
            log.info("not seeking %s: it was revoked before its owner got to it", tp)
            return False
        self._consumer.seek(tp, offset)
        return True

    def highwater(self, partition: int) -> int | None:
        """The partition's end as the last fetch response said (no round trip)."""
        try:
            end = self._consumer.highwater(TopicPartition(self.topic, partition))
        except (AssertionError, KafkaError):  # not assigned (any more)
            return None
        return None if end is None else int(end)

    def offsets(self, partition: int) -> tuple[int, int]:
        tp = TopicPartition(self.topic, partition)
        try:
            first = self._consumer.beginning_offsets([tp])[tp]
            end = self._consumer.end_offsets([tp])[tp]
        except KafkaError as exc:
            raise BrokerUnavailableError(f"cannot read offsets of {tp}: {exc}") from exc
        return int(first), int(end)

    def commit(self, offsets: Mapping[int, int]) -> None:
        """Store consumed positions in Kafka (subscriptions; workers track in the store)."""
        try:
            self._consumer.commit(
                {
                    TopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1)
                    for p, o in offsets.items()
                }
            )
        except KafkaError as exc:
            raise BrokerUnavailableError(f"cannot commit offsets on {self.topic}: {exc}") from exc

    def assignment(self) -> list[int]:
        return sorted(tp.partition for tp in self._consumer.assignment())

    def pause_all(self) -> None:
        """Stop fetching every assigned partition; polls keep the membership alive."""
        self._consumer.pause(*self._consumer.assignment())

    def resume_all(self) -> None:
        self._consumer.resume(*self._consumer.paused())

    def group_state(self) -> str:
        """This member's view of its group (``STABLE``, ``REBALANCING``, ``UNJOINED``)."""
        state = str(self._consumer.group_metadata().state)  # kafka-python: "<stable>"
        return state.strip("<>").upper()

    def rejoin(self, *, abandon_client: bool = False) -> None:
        """Leave and join the group again with a new client: the way out of a stuck join.

        The partitions this member held count as revoked; the next poll reports it. A
        client whose own calls got stuck (``abandon_client``) is closed on a thread of its own,
        since its close may get stuck the same way; this member does not wait for it.
        """
        held = self.assignment()
        if abandon_client:
            abandon(self._consumer, f"consumer of {self.topic}")
        else:
            self.close()
        self._consumer = connect("group consumer", self._settings, self._make)
        self._subscribe()
        with self._pending_lock:
            self._joining_since = time.monotonic()
        if held:
            self._note(revoked=held)

    def close(self) -> None:
        try:
            self._consumer.close(autocommit=False)
        except KafkaError as exc:
            log.warning("closing the consumer of %s: %s", self.topic, exc)
