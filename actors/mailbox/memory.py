"""An in-process mailbox with the Kafka mailbox's semantics, for fast tests and demos.

It keeps partitioned, offset-addressed logs of encoded envelopes, so the worker runs
exactly the code it runs against Kafka: seeking to tracked positions, rebalancing
between consumers of one group, dead-lettering undecodable bytes.
"""

from __future__ import annotations

import threading
import uuid
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from actors.envelopes import Envelope
from actors.errors import UnknownDeadLetterError
from actors.mailbox.protocol import (
    DeadLetterPage,
    DeadLetterRecord,
    Delivery,
    PartitionListener,
    dead_letter_id,
    is_activity_task,
    parse_dead_letter_id,
    redrive_envelope,
)
from eventstore import Outcome


def _done() -> Future[None]:
    f: Future[None] = Future()
    f.set_result(None)
    return f


@dataclass
class DeadLetter:
    """A parked message, as the in-memory dead-letter log keeps it (its id: ``0-<index>``)."""

    delivery: Delivery
    error: str
    source: str = ""
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    redriven_at: datetime | None = None

    def record(self, index: int) -> DeadLetterRecord:
        d = self.delivery
        return DeadLetterRecord(
            id=dead_letter_id(0, index),
            raw=d.raw,
            envelope=d.envelope or _decoded(d.raw),
            error=self.error,
            source=self.source,
            at=self.at,
            redriven_at=self.redriven_at,
        )


def _decoded(raw: bytes) -> Envelope | None:
    try:
        return Envelope.decode(raw)
    except (ValidationError, ValueError):
        return None


class MemoryReplyChannel:
    def __init__(self, mailbox: InMemoryMailbox) -> None:
        self._mailbox = mailbox
        self.route = f"local:{uuid.uuid4().hex}"
        self._waiting: dict[str, Future[Outcome[Any]]] = {}
        self._lock = threading.Lock()

    def expect(self, command_id: str) -> Future[Outcome[Any]]:
        with self._lock:
            fut = self._waiting.get(command_id)
            if fut is None:
                fut = self._waiting[command_id] = Future()
            return fut

    def forget(self, command_id: str) -> None:
        with self._lock:
            self._waiting.pop(command_id, None)

    def resolve(self, reply: Outcome[Any]) -> None:
        with self._lock:
            fut = self._waiting.pop(reply.command_id, None)
        if fut is not None and not fut.done():
            fut.set_result(reply)

    def close(self) -> None:
        self._mailbox._channels.pop(self.route, None)


@dataclass
class _Group:
    members: list[MemoryConsumer] = field(default_factory=list)
    generation: int = 0


@dataclass
class _TaskGroup:
    members: list[MemoryTaskConsumer] = field(default_factory=list)
    generation: int = 0
    committed: dict[int, int] = field(default_factory=dict)


class InMemoryMailbox:
    """Partitioned logs in memory; one process, any number of consumers per group."""

    def __init__(self, partitions: int = 4, namespace: str | None = None) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self._logs: list[list[bytes]] = [[] for _ in range(partitions)]
        self._cond = threading.Condition()
        self._groups: dict[str, _Group] = {}
        self._tasks: list[list[bytes]] = [[] for _ in range(partitions)]
        self._task_groups: dict[str, _TaskGroup] = {}
        self._channels: dict[str, MemoryReplyChannel] = {}
        # Positions are tracked in the store under this name. A new in-memory log is a new
        # log: unless told otherwise, it must not resume from an earlier one's positions.
        self._name = f"memory:{namespace or uuid.uuid4().hex}.commands"
        self.dead_letters: list[DeadLetter] = []
        self.replies_sent = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def partitions(self) -> int:
        return len(self._logs)

    def partition_of(self, address: str) -> int:
        return zlib.crc32(address.encode()) % len(self._logs)

    def send(self, envelope: Envelope) -> Future[None]:
        if is_activity_task(envelope):
            with self._cond:
                partition = zlib.crc32(envelope.command_id.encode()) % len(self._tasks)
                self._tasks[partition].append(envelope.encode())
                self._cond.notify_all()
            return _done()
        self.append_raw(self.partition_of(envelope.address), envelope.encode())
        return _done()

    def task_log(self) -> list[Envelope]:
        """Every activity task sent so far, in no particular order (what tests look at)."""
        with self._cond:
            return [Envelope.decode(raw) for log in self._tasks for raw in log]

    def log_length(self, partition: int) -> int:
        """How many messages a partition holds (what tests look at)."""
        with self._cond:
            return len(self._logs[partition])

    def raw_log(self, partition: int) -> list[bytes]:
        """A copy of a partition's messages as stored (what tests look at)."""
        with self._cond:
            return list(self._logs[partition])

    def append_raw(self, partition: int, raw: bytes) -> None:
        """Put bytes straight into a partition (tests use it to inject poison)."""
        with self._cond:
            self._logs[partition].append(raw)
            self._cond.notify_all()

    def send_replies(self, route: str, replies: Sequence[Outcome[Any]]) -> None:
        channel = self._channels.get(route)
        self.replies_sent += len(replies)
        if channel is not None:
            for reply in replies:
                channel.resolve(reply)

    def dead_letter(self, delivery: Delivery, error: str) -> Future[None]:
        source = f"{self._name}#{delivery.partition}@{delivery.offset}"
        with self._cond:
            self.dead_letters.append(DeadLetter(delivery, error, source))
        return _done()

    def list_dead_letters(self, after: str | None = None, limit: int = 100) -> DeadLetterPage:
        start = 0 if after is None else parse_dead_letter_id(after)[1] + 1
        with self._cond:
            parked = self.dead_letters[start : start + limit]
            more = start + limit < len(self.dead_letters)
        found = [d.record(start + i) for i, d in enumerate(parked)]
        return DeadLetterPage(found, found[-1].id if more and found else None)

    def dead_letter_at(self, dead_letter_id: str) -> DeadLetterRecord:
        partition, index = parse_dead_letter_id(dead_letter_id)
        with self._cond:
            if partition != 0 or index >= len(self.dead_letters):
                raise UnknownDeadLetterError(dead_letter_id)
            return self.dead_letters[index].record(index)

    def redrive(self, dead_letter_id: str) -> DeadLetterRecord:
        partition, index = parse_dead_letter_id(dead_letter_id)
        with self._cond:  # one re-drive at a time: the check and the mark are one step
            if partition != 0 or index >= len(self.dead_letters):
                raise UnknownDeadLetterError(dead_letter_id)
            parked = self.dead_letters[index]
            self.send(redrive_envelope(parked.record(index)))
            parked.redriven_at = datetime.now(UTC)
            return parked.record(index)

    def flush(self, timeout: float | None = None) -> None:
        return None

    def reply_channel(self) -> MemoryReplyChannel:
        channel = MemoryReplyChannel(self)
        self._channels[channel.route] = channel
        return channel

    def consumer(
        self, group: str, listener: PartitionListener, *, instance_id: str | None = None
    ) -> MemoryConsumer:
        with self._cond:
            g = self._groups.setdefault(group, _Group())
            consumer = MemoryConsumer(self, g, listener)
            g.members.append(consumer)
            g.generation += 1
            self._cond.notify_all()
            return consumer

    def task_consumer(self, group: str) -> MemoryTaskConsumer:
        with self._cond:
            g = self._task_groups.setdefault(group, _TaskGroup())
            consumer = MemoryTaskConsumer(self, g)
            g.members.append(consumer)
            g.generation += 1
            self._cond.notify_all()
            return consumer

    def close(self) -> None:
        with self._cond:
            for tg in self._task_groups.values():
                tg.members.clear()
                tg.generation += 1
            for g in self._groups.values():
                g.members.clear()
                g.generation += 1
            self._cond.notify_all()

    def _leave(self, consumer: MemoryConsumer) -> None:
        with self._cond:
            if consumer in consumer.group.members:
                consumer.group.members.remove(consumer)
                consumer.group.generation += 1
                self._cond.notify_all()

    def _share(self, consumer: MemoryConsumer) -> list[int]:
        members = consumer.group.members
        if consumer not in members:
            return []
        i = members.index(consumer)
        return [p for p in range(len(self._logs)) if p % len(members) == i]


class MemoryConsumer:
    def __init__(self, mailbox: InMemoryMailbox, group: _Group, listener: PartitionListener):
        self._mailbox = mailbox
        self.group = group
        self._listener = listener
        self._generation = -1
        self._owned: list[int] = []
        self._next: dict[int, int] = {}
        self._rr = 0

    def _rebalance(self) -> None:
        if self._generation == self.group.generation:
            return
        self._generation = self.group.generation
        new = self._mailbox._share(self)
        if self._owned:
            self._listener.on_revoked(list(self._owned))
        self._owned = new
        self._next = dict.fromkeys(new, 0)
        if new:
            self._listener.on_assigned(list(new))

    def poll(self, timeout: float, max_records: int) -> list[Delivery]:
        mb = self._mailbox
        with mb._cond:
            self._rebalance()
            if not self._ready():
                mb._cond.wait(timeout)
                self._rebalance()
            out: list[Delivery] = []
            owned = self._owned
            for k in range(len(owned)):
                p = owned[(self._rr + k) % len(owned)]
                log = mb._logs[p]
                start = self._next[p]
                end = min(len(log), start + max_records - len(out))
                for offset in range(start, end):
                    out.append(_decode(p, offset, log[offset]))
                self._next[p] = max(start, end)
                if len(out) >= max_records:
                    break
            self._rr += 1
            return out

    def _ready(self) -> bool:
        logs = self._mailbox._logs
        return any(self._next[p] < len(logs[p]) for p in self._owned)

    def seek(self, partition: int, offset: int) -> None:
        self._next[partition] = offset

    def offsets(self, partition: int) -> tuple[int, int]:
        return 0, len(self._mailbox._logs[partition])

    def log_end(self, partition: int) -> int | None:
        return len(self._mailbox._logs[partition])

    def close(self) -> None:
        self._mailbox._leave(self)


class MemoryTaskConsumer:
    """A member of an activity worker group; positions are committed in the group."""

    def __init__(self, mailbox: InMemoryMailbox, group: _TaskGroup) -> None:
        self._mailbox = mailbox
        self.group = group
        self._generation = -1
        self._owned: list[int] = []
        self._next: dict[int, int] = {}
        self._assigned: list[int] = []
        self._paused = False

    def _rebalance(self) -> None:
        g = self.group
        if self._generation == g.generation:
            return
        self._generation = g.generation
        if self not in g.members:
            self._owned = []
        else:
            i = g.members.index(self)
            self._owned = [p for p in range(len(self._mailbox._tasks)) if p % len(g.members) == i]
        self._next = {p: g.committed.get(p, 0) for p in self._owned}
        self._assigned += self._owned

    def _ready(self) -> bool:
        tasks = self._mailbox._tasks
        return not self._paused and any(self._next[p] < len(tasks[p]) for p in self._owned)

    def poll(self, timeout: float, max_records: int) -> list[Delivery]:
        mb = self._mailbox
        with mb._cond:
            self._rebalance()
            if not self._ready():
                mb._cond.wait(timeout)
                self._rebalance()
            if self._paused:
                return []
            out: list[Delivery] = []
            for p in self._owned:
                log = mb._tasks[p]
                start = self._next[p]
                end = min(len(log), start + max_records - len(out))
                out += [_decode(p, offset, log[offset]) for offset in range(start, end)]
                self._next[p] = max(start, end)
            return out

    def take_assigned(self) -> list[int]:
        with self._mailbox._cond:
            assigned, self._assigned = self._assigned, []
            return assigned

    def commit(self, offsets: Mapping[int, int]) -> None:
        with self._mailbox._cond:
            for p, offset in offsets.items():
                if p in self._owned:
                    self.group.committed[p] = max(self.group.committed.get(p, 0), offset)

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        with self._mailbox._cond:
            self._paused = False
            self._mailbox._cond.notify_all()

    def wake(self) -> None:
        with self._mailbox._cond:
            self._mailbox._cond.notify_all()

    def close(self) -> None:
        with self._mailbox._cond:
            if self in self.group.members:
                self.group.members.remove(self)
                self.group.generation += 1
                self._mailbox._cond.notify_all()


def _decode(partition: int, offset: int, raw: bytes) -> Delivery:
    try:
        return Delivery(partition, offset, raw, Envelope.decode(raw))
    except (ValidationError, ValueError) as exc:
        return Delivery(partition, offset, raw, None, f"undecodable envelope: {exc}")
