"""The Kafka mailbox: envelopes keyed by address in a namespaced commands topic.

Every message to one actor carries its address as the record key, so Kafka's default
partitioner puts it in one partition: one owner, total order. Values are the envelope's
JSON; headers carry its kind, command id, reply route and W3C ``traceparent`` for tools
that do not parse JSON. Updates are answered on a per-process reply topic, and, where
the caller can be reached, by a UDP datagram too (``reply_datagrams``); poison goes to
a dead-letter topic with its error. Tracked positions are named after the commands topic's id, so a
broker that lost the topic (the embedded one keeps nothing) is recognised as a new log
rather than silently skipped.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from pydantic import ValidationError

from actors.envelopes import OUTCOMES, Envelope
from actors.errors import MailboxUnavailableError
from actors.mailbox.kafka_consumers import KafkaMailboxConsumer, KafkaTaskConsumer
from actors.mailbox.kafka_deadletters import KafkaDeadLetters
from actors.mailbox.protocol import (
    DeadLetterPage,
    DeadLetterRecord,
    Delivery,
    PartitionListener,
    is_activity_task,
)
from actors.mailbox.reply_datagrams import (
    DatagramReceiver,
    DatagramSender,
    split_route,
    with_datagrams,
)
from eventstore import Outcome
from eventstore.kafka.admin import Admin
from eventstore.kafka.io import BrokerUnavailableError, KafkaRecord, KafkaSettings, partition_for
from eventstore.kafka.producer import Producer
from eventstore.kafka.tail_consumer import TailConsumer

log = logging.getLogger("entityflow.mailbox")
REPLY_ROUTE = "kafka:"


class KafkaTopics:
    """The topic names of one namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.commands = f"{namespace}.commands"
        self.deadletters = f"{namespace}.deadletters"
        self.redriven = f"{namespace}.deadletters.redriven"
        self.activities = f"{namespace}.activities"
        self.replies_prefix = f"{namespace}.replies."


def _chain(
    source: Future[KafkaRecord], on_failure: Callable[[], None] | None = None
) -> Future[None]:
    target: Future[None] = Future()

    def done(f: Future[KafkaRecord]) -> None:
        exc = f.exception()
        if exc is None:
            target.set_result(None)
        else:
            target.set_exception(MailboxUnavailableError(str(exc)))
            if on_failure is not None:
                on_failure()

    source.add_done_callback(done)
    return target


class KafkaMailbox:
    """The production mailbox over kafka-python."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        namespace: str = "entityflow",
        partitions: int = 16,
        replication_factor: int = 1,
        create_topics: bool = True,
        reply_host: str | None = None,
    ) -> None:
        """``reply_host``: where workers may send this process's replies as datagrams
        (None: only through its reply topic)."""
        self.settings = settings
        self.reply_host = reply_host
        self._datagrams = DatagramSender()
        self.topics = KafkaTopics(namespace)
        self.partition_count = partitions
        self.replication_factor = replication_factor
        self._admin = Admin(settings)
        if create_topics:
            self.ensure_topics()
        self._producer = Producer(settings)
        self._dead = KafkaDeadLetters(
            settings,
            self._producer,
            self.send,
            topic=self.topics.deadletters,
            marks_topic=self.topics.redriven,
        )
        self._topic_id: str | None = None
        self._partitions_known: int | None = None
        self._identity_lock = threading.Lock()
        self._closed = False
        self._channels: weakref.WeakSet[KafkaReplyChannel] = weakref.WeakSet()
        self._healed_at = 0.0
        self.refresh_identity()

    # -- topics -----------------------------------------------------------------------

    def ensure_topics(self) -> None:
        self._admin.ensure_topics(
            {
                self.topics.commands: self.partition_count,
                self.topics.activities: self.partition_count,
                self.topics.deadletters: 1,
                self.topics.redriven: 1,
            },
            replication_factor=self.replication_factor,
        )

    def heal_topics_soon(self) -> None:
        """After a failed send: recreate missing topics (at most every 5 s, off the IO thread).

        A broker that lost its data has none of entityflow's topics, and topics are only
        created by entityflow (``auto.create.topics.enable=false``): whoever notices first
        (a sender, or an idle worker) puts them back, with the configured partition count.
        """
        now = time.monotonic()
        if self._closed or now - self._healed_at < 5.0:
            return
        self._healed_at = now

        def heal() -> None:
            try:
                self.ensure_topics()
            except BrokerUnavailableError as exc:
                log.warning("cannot (re)create topics: %s", exc)

        threading.Thread(target=heal, name="entityflow-topics", daemon=True).start()

    def refresh_identity(self) -> None:
        """Re-read the commands topic's id (it changes when the broker recreated it)."""
        try:
            tid = self._admin.topic_id(self.topics.commands)
            count = self._admin.partitions(self.topics.commands) if tid else 0
        except BrokerUnavailableError as exc:
            log.warning("cannot read the id of %s: %s", self.topics.commands, exc)
            return
        with self._identity_lock:
            if count:
                self._partitions_known = count
            if tid != self._topic_id and self._topic_id is not None:
                log.warning(
                    "topic %s changed id %s -> %s: the broker lost its data; positions of "
                    "the old log no longer apply",
                    self.topics.commands,
                    self._topic_id,
                    tid,
                )
            self._topic_id = tid

    @property
    def name(self) -> str:
        suffix = f"@{self._topic_id}" if self._topic_id else ""
        return f"kafka:{self.topics.commands}{suffix}"

    @property
    def partitions(self) -> int:
        """The commands topic's partition count, as read with its id (or as configured).

        Every message's partition is computed from it (``partition_of``). Asking the
        producer each time blocked each call for the producer's whole metadata timeout
        while the topic was missing (a broker that restarted empty, until the topic is
        back): workers stood still for a minute and more.
        """
        return self._partitions_known or self.partition_count

    def partition_of(self, address: str) -> int:
        return partition_for(address.encode(), self.partitions)

    # -- sending ------------------------------------------------------------------------

    def send(self, envelope: Envelope) -> Future[None]:
        """To the actor's partition of the commands topic; an activity task goes to the
        activity topic, keyed by its command id so that tasks spread over the workers."""
        headers = {"ef-kind": envelope.kind.encode(), "ef-command-id": envelope.command_id.encode()}
        if envelope.reply_to:
            headers["ef-reply-to"] = envelope.reply_to.encode()
        if envelope.traceparent:
            headers["traceparent"] = envelope.traceparent.encode()
        task = is_activity_task(envelope)
        return _chain(
            self._producer.send(
                self.topics.activities if task else self.topics.commands,
                envelope.encode(),
                key=(envelope.command_id if task else envelope.address).encode(),
                headers=headers,
            ),
            self.heal_topics_soon,
        )

    def send_replies(self, route: str, replies: Sequence[Outcome[Any]]) -> None:
        base, datagram_to = split_route(route)
        if not base.startswith(REPLY_ROUTE):
            log.warning("cannot deliver replies to unknown route %r", route)
            return
        topic = base[len(REPLY_ROUTE) :]
        # A reply record holds every reply of one worker batch for one reply topic.
        payload = OUTCOMES.dump_json(list(replies))
        if datagram_to is not None:
            self._datagrams.send(datagram_to, topic, payload)
        future = self._producer.send(topic, payload)
        future.add_done_callback(_log_failure(f"{len(replies)} replies to {topic}"))

    def dead_letter(self, delivery: Delivery, error: str) -> Future[None]:
        headers = {
            "ef-error": error.encode()[:10_000],
            "ef-source": f"{self.topics.commands}#{delivery.partition}@{delivery.offset}".encode(),
        }
        key = delivery.envelope.address.encode() if delivery.envelope else None
        return _chain(
            self._producer.send(self.topics.deadletters, delivery.raw, key=key, headers=headers)
        )

    def list_dead_letters(self, after: str | None = None, limit: int = 100) -> DeadLetterPage:
        return self._dead.page(after, limit)

    def dead_letter_at(self, dead_letter_id: str) -> DeadLetterRecord:
        return self._dead.at(dead_letter_id)

    def redrive(self, dead_letter_id: str) -> DeadLetterRecord:
        return self._dead.redrive(dead_letter_id)

    def flush(self, timeout: float | None = None) -> None:
        try:
            self._producer.flush(timeout)
        except BrokerUnavailableError as exc:
            log.warning("flush failed: %s", exc)

    # -- receiving ----------------------------------------------------------------------

    def reply_channel(self) -> KafkaReplyChannel:
        channel = KafkaReplyChannel(self)
        self._channels.add(channel)
        return channel

    def consumer(
        self, group: str, listener: PartitionListener, *, instance_id: str | None = None
    ) -> KafkaMailboxConsumer:
        return KafkaMailboxConsumer(self, group, listener, instance_id)

    def task_consumer(self, group: str) -> KafkaTaskConsumer:
        return KafkaTaskConsumer(self, group)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close it and the reply channels opened from it that are still open: a channel
        outliving its mailbox kept a consumer thread polling the broker for good (a
        client never closed left one per test run on the suite's shared broker)."""
        self._closed = True
        for channel in list(self._channels):
            channel.close()
        with contextlib.suppress(BrokerUnavailableError):
            self._producer.flush(5)
        self._dead.close()
        self._producer.close()
        self._admin.close()
        self._datagrams.close()


def _log_failure(what: str) -> Callable[[Future[KafkaRecord]], None]:
    def check(f: Future[KafkaRecord]) -> None:
        exc = f.exception()
        if exc is not None:
            log.warning("%s failed: %s", what, exc)

    return check


class KafkaReplyChannel:
    """A reply topic of this process, read by a background thread."""

    def __init__(self, mailbox: KafkaMailbox) -> None:
        self._mailbox = mailbox
        self.topic = f"{mailbox.topics.replies_prefix}{uuid.uuid4().hex}"
        self.route = f"{REPLY_ROUTE}{self.topic}"
        self._waiting: dict[str, Future[Outcome[Any]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._datagrams: DatagramReceiver | None = None
        if mailbox.reply_host is not None:
            self._datagrams = DatagramReceiver(mailbox.reply_host, self.topic, self._resolve)
            self.route = with_datagrams(self.route, *self._datagrams.address)
        mailbox._admin.ensure_topics({self.topic: 1})
        self._consumer = TailConsumer(mailbox.settings, self.topic, from_beginning=True)
        self._thread = threading.Thread(target=self._run, name="entityflow-replies", daemon=True)
        self._thread.start()

    @property
    def datagrams_received(self) -> int:
        """Reply batches that came by datagram (0 when this channel takes none)."""
        return self._datagrams.received if self._datagrams is not None else 0

    def expect(self, command_id: str) -> Future[Outcome[Any]]:
        with self._lock:
            fut = self._waiting.get(command_id)
            if fut is None:
                fut = self._waiting[command_id] = Future()
            return fut

    def forget(self, command_id: str) -> None:
        with self._lock:
            self._waiting.pop(command_id, None)

    def _run(self) -> None:
        idle_since = time.monotonic()
        while not self._stop.is_set():
            records = self._consumer.poll(0.2)
            if records:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > 5.0:
                idle_since = time.monotonic()
                self._heal()
            for record in records:
                try:
                    replies = OUTCOMES.validate_json(record.value)
                except ValidationError:
                    log.warning("ignoring undecodable replies on %s", self.topic)
                    continue
                self._resolve(replies)

    def _resolve(self, replies: Sequence[Outcome[Any]]) -> None:
        """Answer whoever waits; a reply's second copy (topic or datagram) finds nobody."""
        with self._lock:
            found = [(self._waiting.pop(r.command_id, None), r) for r in replies]
        for fut, reply in found:
            if fut is not None and not fut.done():
                fut.set_result(reply)

    def _heal(self) -> None:
        """Recreate the reply topic if the broker lost it, and read it again."""
        if self._stop.is_set() or self._mailbox.closed:
            return
        try:
            self._mailbox._admin.ensure_topics({self.topic: 1})
            if not self._consumer.partitions:
                self._consumer.assign()
        except (BrokerUnavailableError, Exception) as exc:  # keep the reader alive
            log.warning("reply topic %s: %s", self.topic, exc)

    def close(self) -> None:
        with self._lock:  # its owner and its mailbox may close it at once
            if self._stop.is_set():
                return
            self._stop.set()
        self._thread.join(timeout=5)
        if self._datagrams is not None:
            self._datagrams.close()
        self._consumer.close()
        try:
            self._mailbox._admin.delete_topics([self.topic])
        except BrokerUnavailableError as exc:
            log.warning("could not delete reply topic %s: %s", self.topic, exc)
