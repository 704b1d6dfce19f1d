"""The worker loop: poll a batch, process it, commit it with its positions, then reply.

Positions live in the event store, not in the broker: on assignment the worker seeks
each partition to its tracked position, and each commit moves the position only from
the value this worker last saw (a fenced tracking record). A worker that lost its
partitions without noticing (a zombie) therefore fails to commit, forgets what it
holds, and re-reads positions. Nothing is replied or sent before the commit.

Messages to actors of partitions this worker owns skip the broker (``local_delivery``):
they are handled in the batch that sent them when they may go first (``_follow``),
otherwise in the next batch; either batch fences the positions of their partitions too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from actors.batch import BatchResult
from actors.envelopes import Envelope
from actors.errors import MailboxUnavailableError
from actors.local_delivery import LocalDeliveries
from actors.mailbox.protocol import (
    LOCAL_OFFSET,
    Delivery,
    Mailbox,
    MailboxConsumer,
    is_activity_task,
    position_name,
)
from actors.metrics import WorkerMetrics
from actors.runtime import Runtime
from actors.timers import BatchPace, TimerIndex, timers_in_order
from actors.worker_stats import WorkerStats
from eventstore import (
    Commit,
    ConcurrencyConflictError,
    FencedTracking,
    Outcome,
    StoreUnavailableError,
)

log = logging.getLogger("entityflow.worker")
_T = TypeVar("_T")


@dataclass
class _Position:
    tracked: int | None  # the value in the store (what a commit must expect)
    next_read: int  # the next offset to read from the partition


class Worker:
    """Drives one runtime from one mailbox consumer. One thread calls :meth:`run`."""

    def __init__(
        self,
        runtime: Runtime,
        mailbox: Mailbox,
        *,
        group: str = "entityflow-workers",
        max_batch: int = 500,
        poll_timeout: float = 0.1,
        retry_backoff: float = 0.2,
        max_backoff: float = 5.0,
        on_batch: Callable[[BatchResult], None] | None = None,
        tick_interval: float = 1.0,
        local_delivery: bool = True,
        instance_id: str | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        """``instance_id``: this worker's stable identity in its group (static membership:
        restarted under the same id, it takes its partitions back without a rebalance).
        ``metrics``: where it counts (give the one its runtime reports handler times to)."""
        self.runtime = runtime
        self.mailbox = mailbox
        self.group = group
        self.instance_id = instance_id
        self.max_batch = max_batch
        self.poll_timeout = poll_timeout
        self.retry_backoff = retry_backoff
        self.max_backoff = max_backoff
        self.on_batch = on_batch
        self.stats = WorkerStats()
        self.metrics = metrics if metrics is not None else WorkerMetrics()
        self._positions: dict[int, _Position] = {}
        self._stop = threading.Event()
        self._consumer: MailboxConsumer | None = None
        self._backoff = 0.0
        self.tick_interval = tick_interval
        self._next_tick = 0.0
        self._to_wake: list[int] = []
        self._local = LocalDeliveries() if local_delivery else None
        self.timers = TimerIndex(runtime.store, runtime.clock)
        self.pace = BatchPace()
        """How long batches take per message: sizes a batch to end near the next timer."""
        self._caught_up_at: dict[int, int] = {}

    # -- partition ownership -----------------------------------------------------------

    @property
    def owned(self) -> list[int]:
        return sorted(self._positions)

    def on_assigned(self, partitions: list[int]) -> None:
        consumer = self._consumer
        assert consumer is not None
        if self._local is not None:
            # What this worker sent to these partitions through the broker must be in
            # their logs before the log ends are read: local messages wait for them.
            self.mailbox.flush(timeout=30)
        for p in partitions:
            self._positions[p] = self._resume(consumer, p)
        self._to_wake.extend(partitions)
        self.timers.assigned(partitions)
        log.info("assigned partitions %s", partitions)

    def on_revoked(self, partitions: list[int]) -> None:
        for p in partitions:
            self._positions.pop(p, None)
            self._caught_up_at.pop(p, None)
        self.runtime.forget_partitions(partitions)
        self.timers.revoked(partitions)
        if self._local is not None:
            self._send_all(self._local.revoked(partitions))
        log.info("revoked partitions %s", partitions)

    def _resume(self, consumer: MailboxConsumer, partition: int) -> _Position:
        """Seek to the tracked position; a position past the log's end means the log was reset."""
        name = position_name(self.mailbox, partition)
        tracked = self._until_available(
            lambda: self.runtime.store.position(name), StoreUnavailableError
        )
        first, end = self._until_available(
            lambda: consumer.offsets(partition), MailboxUnavailableError
        )
        self._caught_up_at[partition] = end
        if self._local is not None:
            self._local.assigned(partition, end)
        start = tracked if tracked is not None else first
        if tracked is not None and (tracked > end or tracked < first):
            # The broker lost its data (or retention passed us by): the log we tracked is
            # gone. Start from what is there now; commits still fence on the old value.
            log.warning(
                "partition %s: tracked position %s is outside the log [%s, %s]; the log was "
                "reset, resuming from %s",
                partition,
                tracked,
                first,
                end,
                first,
            )
            self.stats.log_resets += 1
            start = first
        consumer.seek(partition, start)
        return _Position(tracked, start)

    def _until_available(self, call: Callable[[], _T], unavailable: type[Exception]) -> _T:
        """Resuming a partition waits out an outage of the store or the broker (not a stop)."""
        while True:
            try:
                return call()
            except unavailable as exc:
                if self._stop.is_set():
                    raise
                log.warning("resuming a partition: %s; retrying", exc)
                time.sleep(self.retry_backoff)

    def _resync(self) -> None:
        """After a lost race, forget everything and seek back to the stored positions."""
        consumer = self._consumer
        assert consumer is not None
        self.runtime.forget_partitions(list(self._positions))
        for p in list(self._positions):
            self._positions[p] = self._resume(consumer, p)

    # -- the loop ------------------------------------------------------------------------

    def start(self) -> None:
        if self._consumer is None:
            self._consumer = self.mailbox.consumer(self.group, self, instance_id=self.instance_id)

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand and let go of its partitions."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        self.start()
        try:
            while not self._stop.is_set():
                self.step()
        finally:
            self.close()

    def close(self) -> None:
        if self._local is not None and len(self._local):
            # Not lost if this fails: their senders' commits hold them (re-sent on wake).
            self._send_all(self._local.drain())
            self.mailbox.flush(timeout=10)
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        self.runtime.forget_partitions(list(self._positions))
        self._positions.clear()

    def step(self) -> int:
        """One poll-process-commit cycle; returns the number of messages handled."""
        self.start()
        consumer = self._consumer
        assert consumer is not None
        if self._backoff:
            self._stop.wait(self._backoff)
        stats = self.stats
        started = time.perf_counter()
        deliveries = self._gather(consumer)
        self._housekeeping(consumer)
        if not deliveries:
            self.runtime.passivate_idle()
            return 0
        polled = time.perf_counter()
        stats.poll_seconds += polled - started
        try:
            batch = self.runtime.process(deliveries, self._follow)
            self._dead_letter(batch)
            fences = self._advance(batch, [*deliveries, *batch.followed])
            batch.commit.positions.extend(fences.values())
            processed = time.perf_counter()
            stats.process_seconds += processed - polled
            self.runtime.store.commit(batch.commit)
            commit_seconds = time.perf_counter() - processed
            stats.commit_seconds += commit_seconds
        except ConcurrencyConflictError as exc:
            self._lost_race(exc, deliveries)
            return 0
        except StoreUnavailableError as exc:
            self._store_down(exc, deliveries)
            return 0
        self._backoff = 0.0
        handled = len(deliveries) + len(batch.followed)
        self.metrics.committed(batch, handled, commit_seconds)  # before any reply
        for p, fence in fences.items():
            self._positions[p].tracked = fence.notification_id
        for p, last in batch.last_offsets.items():
            self._positions[p].next_read = last + 1
        sending = time.perf_counter()
        self.timers.committed(batch.commit)
        self.runtime.committed(batch)
        self._after_commit(batch)
        stats.send_seconds += time.perf_counter() - sending
        stats.batches += 1
        stats.messages += handled
        stats.local_messages += sum(1 for d in deliveries if d.local) + len(batch.followed)
        stats.followed += len(batch.followed)
        self.pace.took(time.perf_counter() - polled, handled)  # not the poll's wait
        if self.on_batch is not None:
            self.on_batch(batch)
        return len(deliveries)

    def _lost_race(self, exc: ConcurrencyConflictError, deliveries: list[Delivery]) -> None:
        self.stats.conflicts += 1
        self.metrics.commit_failed("conflict")
        log.warning("batch lost a race, re-reading positions: %s", exc)
        self.runtime.forget_partitions(list(self._positions))
        self.timers.reset()
        self._resync()
        self._put_back(deliveries)
        self._answer_from_store(deliveries)

    def _store_down(self, exc: StoreUnavailableError, deliveries: list[Delivery]) -> None:
        self.stats.store_failures += 1
        self.metrics.commit_failed("store_unavailable")
        self._backoff = min(self.max_backoff, max(self.retry_backoff, self._backoff * 2))
        log.warning("store unavailable, retrying the batch in %.1fs: %s", self._backoff, exc)
        self.runtime.forget_partitions(list(self._positions))
        self.timers.reset()
        self._rewind(deliveries)
        self._put_back(deliveries)

    def _gather(self, consumer: MailboxConsumer) -> list[Delivery]:
        """A batch: due timers, what the broker has for owned partitions, then co-located
        messages.

        With co-located messages ready, the poll does not wait for the broker; held ones
        (a new partition not read to its end yet) wait for it like anything else.
        """
        # Due timers are taken first (up to half a batch), so a backlog in the broker cannot
        # hold them back until it drains; the poll then does not wait. Those due while it
        # read (tens of ms under a backlog) join too, not a whole batch cycle later.
        timers = self._take_timers(self.max_batch // 2)
        waiting = bool(timers) or (
            self._local is not None and self._local.has_ready(self._next_read)
        )
        # With the next timer near, read only what ends about when it comes due.
        size = len(timers) + self.pace.room(
            self.max_batch - len(timers), self.timers.seconds_to_next()
        )
        polled = consumer.poll(0.0 if waiting else self._poll_wait(), size - len(timers))
        room = self.max_batch - len(timers) - len(polled)
        timers += self._take_timers(min(room, self.max_batch // 2 - len(timers)))
        owned = self._positions  # a partition revoked meanwhile: neither its reads nor timers
        deliveries = timers_in_order(
            [d for d in polled if d.partition in owned], [t for t in timers if t.partition in owned]
        )
        self.timers.refresh()  # partitions assigned by the poll: their timers, before the commit
        return deliveries + self._take_local(size - len(deliveries))

    def _poll_wait(self) -> float:
        """The poll waits for the broker, but not past the next timer's due time."""
        self.timers.refresh()
        due_in = self.timers.seconds_to_next()
        return self.poll_timeout if due_in is None else min(self.poll_timeout, due_in)

    def _take_timers(self, room: int) -> list[Delivery]:
        """Due timers of partitions read up to where they ended when this worker got them
        (so a message sent before the timer was due is handled before it fires)."""
        if room <= 0:
            return []
        self.timers.refresh()
        rows = self.timers.take_due(room, self._timers_ready)
        self.stats.timers_fired += len(rows)
        if rows:
            self.metrics.timers_fired.inc(len(rows))
        return [
            Delivery(row.partition, LOCAL_OFFSET, b"", Envelope.decode(row.message.encode()))
            for row in rows
        ]

    def _timers_ready(self, partition: int) -> bool:
        pos = self._positions.get(partition)
        return pos is not None and pos.next_read >= self._caught_up_at.get(partition, 0)

    def _report(self, consumer: MailboxConsumer) -> None:
        """Refresh the gauges that need a walk (once per tick, on this thread)."""
        lag: dict[int, int] = {}
        for p, pos in self._positions.items():
            end = consumer.log_end(p)
            lag[p] = max(0, end - pos.next_read) if end is not None else 0
        self.metrics.partitions(lag)
        self.metrics.actors(self.runtime.cached_by_type())
        self.metrics.timers(*self.timers.counts())

    def _housekeeping(self, consumer: MailboxConsumer) -> None:
        """Wake unfinished actors of new partitions, and send what cached actors have due."""
        outgoing: list[Envelope] = []
        if self._to_wake:
            owned = [p for p in self._to_wake if p in self._positions]
            self._to_wake = []
            try:
                outgoing += self.runtime.wake(owned, self.mailbox.partition_of)
            except StoreUnavailableError:
                log.warning("store unavailable while waking partitions %s; will retry", owned)
                self._to_wake.extend(owned)
        now = time.monotonic()
        if now >= self._next_tick:
            self._next_tick = now + self.tick_interval
            outgoing += self.runtime.tick()
            self._report(consumer)
        for envelope in outgoing:
            self.dispatch(envelope)

    # -- co-located delivery -------------------------------------------------------------

    def dispatch(self, envelope: Envelope) -> None:
        """Send through the broker, or keep for the next batch if this worker owns the actor."""
        local = self._local
        if local is not None and not is_activity_task(envelope):
            partition = self.mailbox.partition_of(envelope.address)
            if partition in self._positions and local.accepts(partition):
                local.put(partition, envelope)
                return
        self.mailbox.send(envelope)

    def _send_all(self, envelopes: Iterable[Envelope]) -> None:
        for envelope in envelopes:
            self.mailbox.send(envelope)

    def _follow(self, batch: BatchResult) -> list[Delivery]:
        """Messages the batch sent to actors this worker may handle now: handled in the same
        batch (one commit for a chain of hops), up to twice the batch size."""
        local = self._local
        if local is None or len(batch.followed) >= self.max_batch:
            return []
        partition_of = self.mailbox.partition_of
        owned = self._positions

        def here(envelope: Envelope) -> bool:
            if is_activity_task(envelope):
                return False
            partition = partition_of(envelope.address)
            return partition in owned and local.ready(partition, self._next_read)

        return [
            Delivery(partition_of(e.address), LOCAL_OFFSET, b"", e)
            for e in batch.take_messages(here)
        ]

    def _take_local(self, room: int) -> list[Delivery]:
        if self._local is None or room <= 0:
            return []
        taken, orphans = self._local.take(self._next_read, room)
        self._send_all(orphans)
        return taken

    def _next_read(self, partition: int) -> int:
        return self._positions[partition].next_read

    def _put_back(self, deliveries: list[Delivery]) -> None:
        """Return a failed batch's co-located messages, but not its timer firings: the
        timer index reloads those from the store (a copy kept here could fire a timer
        that was moved or set again since, and clear it)."""
        if self._local is not None:
            self._local.put_back(
                d for d in deliveries if d.envelope is None or d.envelope.timer is None
            )

    def _answer_from_store(self, deliveries: list[Delivery]) -> None:
        """Reply to commands of a lost race whose outcome is stored.

        A race is also lost to oneself: a commit the server applied but whose answer never
        arrived (the connection broke). The position then says the batch is done, so it is
        not read again, and its callers would wait in vain; their outcomes are stored, so
        answer them (a duplicate reply, if another worker answered too, is harmless).
        """
        asking = [
            d.envelope
            for d in deliveries
            if d.envelope is not None and d.envelope.reply_to and d.envelope.kind != "reply"
        ]
        if not asking:
            return
        try:
            known = self.runtime.store.outcomes([e.command_id for e in asking])
        except StoreUnavailableError:
            return
        batch = BatchResult(commit=Commit())
        for envelope in asking:
            outcome = known.get(envelope.command_id)
            if outcome is not None and envelope.reply_to:
                batch.replies.append((envelope.reply_to, outcome, envelope.correlation))
        self._after_commit(batch)

    def _advance(self, batch: BatchResult, deliveries: list[Delivery]) -> dict[int, FencedTracking]:
        """Move the positions read from; fence, unmoved, those only co-located messages used.

        A batch of co-located messages reads nothing from the broker, but it writes to
        actors of the partitions they belong to, so it must fail like any other batch if
        another worker has taken one of them over (a zombie cannot commit).
        """
        fences = {
            p: self._fence(p, last + 1, self._positions[p].tracked)
            for p, last in batch.last_offsets.items()
        }
        for p in {d.partition for d in deliveries if d.local} - fences.keys():
            pos = self._positions[p]
            stay = pos.tracked if pos.tracked is not None else pos.next_read
            fences[p] = self._fence(p, stay, pos.tracked)
        return fences

    def _fence(self, partition: int, moved_to: int, expected: int | None) -> FencedTracking:
        return FencedTracking(
            application_name=position_name(self.mailbox, partition),
            notification_id=moved_to,
            expected=expected,
        )

    def _rewind(self, deliveries: list[Delivery]) -> None:
        consumer = self._consumer
        assert consumer is not None
        for p in {d.partition for d in deliveries}:
            consumer.seek(p, self._positions[p].next_read)

    def _dead_letter(self, batch: BatchResult) -> None:
        """Park poison messages before committing past them (at-least-once to the DLQ)."""
        futures = [self.mailbox.dead_letter(_with_raw(d), error) for d, error in batch.dead_letters]
        for f in futures:
            f.result(timeout=30)
        self.stats.dead_letters += len(futures)
        for d, error in batch.dead_letters:
            log.error("dead-lettered %s/%s@%s: %s", self.mailbox.name, d.partition, d.offset, error)

    def _after_commit(self, batch: BatchResult) -> None:
        by_route: dict[str, list[Outcome[Any]]] = {}
        for route, reply in batch.channel_replies():
            by_route.setdefault(route, []).append(reply)
        for route, replies in by_route.items():
            self.mailbox.send_replies(route, replies)
        # Sent, not awaited: the producer delivers within its linger time, and waiting for
        # the broker's acknowledgements here would hold up the next poll. Nothing depends
        # on them: outcomes are stored (a caller can ask), and a workflow re-sends a call
        # that got no reply.
        for envelope in batch.messages_after_commit():
            self.dispatch(envelope)


def _with_raw(delivery: Delivery) -> Delivery:
    """A co-located delivery has no bytes read from the broker; the dead-letter topic needs some."""
    if delivery.local and delivery.envelope is not None:
        return replace(delivery, raw=delivery.envelope.encode())
    return delivery
