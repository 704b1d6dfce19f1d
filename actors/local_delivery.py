"""Co-located delivery: messages a worker sends to actors of partitions it owns itself.

A saga is a chain of messages between actors (the coordinator calls an entity, the
entity replies, the coordinator calls the next one). When the receiving actor's
partition belongs to the sending worker, a trip through the broker adds a produce, a
fetch and the broker's fetch wait to every step, and changes nothing: the same worker
would read the message back and handle it. So the worker handles such messages itself:
in the batch that sent them when they may go first (``ready``: one commit for a chain of
hops, see ``Runtime.process``), otherwise in its next batch through this queue.
Handling them in the sending batch, measured on the same W3 bench (alternated, one broker,
medians of 3, beside a neighbour's load): 163 and 300 sagas/s against 75 and 129 when
each hop waited for the next batch; p99 371 and 170 ms against 875 and 516.

Re-decided on Apache Kafka with the bench (W3 order sagas over HTTP, one API and one
worker process, PostgreSQL, alternating runs on one broker, medians of 3): the worker
spent 5.26 CPU-ms per saga with it, 7.25 without, and API + worker + broker 11.3 against
14.1; so it stays. (Sagas/s was 21 against 23 on a machine at load 15-24, where
throughput only measured the neighbours.)

Nothing durable is skipped. These messages are produced only after the commit that
caused them (workflow calls are in the history, replies are stored outcomes), exactly
as before; a worker that dies with messages queued here is the same case as one that
dies before its producer sent them: the coordinator re-sends what has no reply, and the
receiver answers a command id it has seen from its stored outcome.

Order is what needs care. Per sender and receiver, messages must arrive in the order
sent. Two rules keep it:

- a partition the worker has just been given accepts local messages only once the
  worker has read the partition up to where it ended at assignment, after flushing its
  own producer; until then its messages wait here, in order, so none overtakes a message
  this worker sent through the broker while another worker owned the partition;
- a partition the worker loses gets its waiting messages through the broker, in order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from actors.envelopes import Envelope
from actors.mailbox.protocol import LOCAL_OFFSET, Delivery


class LocalDeliveries:
    """The queue of co-located messages of one worker, and which partitions take them."""

    def __init__(self) -> None:
        self._queue: deque[tuple[int, Envelope]] = deque()
        self._ready_from: dict[int, int] = {}
        self.delivered = 0

    def __len__(self) -> int:
        return len(self._queue)

    def accepts(self, partition: int) -> bool:
        """Whether a message to ``partition`` may stay in this worker."""
        return partition in self._ready_from

    def assigned(self, partition: int, log_end: int) -> None:
        """The worker owns ``partition``, whose log ended at ``log_end`` (own sends flushed)."""
        self._ready_from[partition] = log_end

    def revoked(self, partitions: Iterable[int]) -> list[Envelope]:
        """Stop taking messages for ``partitions``; return theirs, in order, for the broker."""
        gone = set(partitions)
        for p in gone:
            self._ready_from.pop(p, None)
        leaving = [env for p, env in self._queue if p in gone]
        if leaving:
            self._queue = deque((p, env) for p, env in self._queue if p not in gone)
        return leaving

    def put(self, partition: int, envelope: Envelope) -> None:
        self._queue.append((partition, envelope))

    def put_back(self, deliveries: Iterable[Delivery]) -> None:
        """Return the local deliveries of a batch that did not commit, ahead of the rest."""
        returned = [(d.partition, d.envelope) for d in deliveries if d.local and d.envelope]
        self._queue.extendleft(reversed(returned))

    def ready(self, partition: int, read_up_to: Callable[[int], int]) -> bool:
        """Whether a message to ``partition`` may be handled now, ahead of the queue: the
        partition takes local messages, has caught up, and has none waiting here (so it
        would overtake nothing its sender queued before)."""
        ready_from = self._ready_from.get(partition)
        if ready_from is None or read_up_to(partition) < ready_from:
            return False
        return not any(p == partition for p, _ in self._queue)

    def has_ready(self, read_up_to: Callable[[int], int]) -> bool:
        """Whether :meth:`take` would hand out anything (then the poll need not wait)."""
        ready_from = self._ready_from
        return any(p not in ready_from or read_up_to(p) >= ready_from[p] for p, _ in self._queue)

    def take(
        self, read_up_to: Callable[[int], int], limit: int
    ) -> tuple[list[Delivery], list[Envelope]]:
        """Up to ``limit`` messages, oldest first, of partitions that have caught up.

        ``read_up_to(p)`` is the next offset the worker will read from partition ``p``.
        Also returns, for the broker, messages of partitions the worker no longer owns
        (put back after a failed batch that lost them).
        """
        if not self._queue:
            return [], []
        taken: list[Delivery] = []
        orphans: list[Envelope] = []
        waiting: deque[tuple[int, Envelope]] = deque()
        for p, env in self._queue:
            ready_from = self._ready_from.get(p)
            if ready_from is None:
                orphans.append(env)
            elif len(taken) < limit and read_up_to(p) >= ready_from:
                taken.append(Delivery(p, LOCAL_OFFSET, b"", env))
            else:
                waiting.append((p, env))
        self._queue = waiting
        self.delivered += len(taken)
        return taken, orphans

    def drain(self) -> list[Envelope]:
        """Everything still queued, in order (the worker is closing)."""
        leaving = [env for _, env in self._queue]
        self._queue.clear()
        self._ready_from.clear()
        return leaving
