"""The actor runtime: turns a batch of deliveries into one commit and its consequences.

Per batch it reads the outcomes of every command id in one query (duplicates get the
original reply and make no events), routes each message to its cached actor (loading
it from snapshot + tail when cold), and gathers events, outcomes and visibility rows
into one :class:`~eventstore.Commit`. Replies, outgoing messages and snapshots happen
only after the worker has committed. A failed commit discards every actor the batch
touched, so nothing unconfirmed is ever served from memory.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from actors.batch import BatchResult
from actors.envelopes import Envelope
from actors.errors import ActorsError
from actors.kinds import Actor, ActorKind, Turn
from actors.mailbox.protocol import Delivery
from actors.timers import timer_id, timer_row
from eventstore import (
    Commit,
    EventDecodeError,
    EventRegistry,
    LoadedStream,
    Outcome,
    RecordedEvent,
    Snapshot,
    Store,
    UnknownEventTypeError,
    tracing,
)

log = logging.getLogger("entityflow.runtime")
# What loading an actor may raise besides an unavailable store: bad stored data or a
# failing @apply. ConcurrencyConflictError and StoreUnavailableError are not among them;
# they must reach the worker, which retries the whole batch.
_LOAD_ERRORS: tuple[type[Exception], ...] = (
    EventDecodeError,
    UnknownEventTypeError,
    ValidationError,
    ActorsError,
    ArithmeticError,
    LookupError,
    TypeError,
    ValueError,
    AttributeError,
)
Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Cached:
    actor: Actor
    partition: int
    snapshot_version: int
    used_at: float


def merge_registries(kinds: Iterable[ActorKind]) -> EventRegistry:
    registry = EventRegistry()
    for kind in kinds:
        registry.merge(kind.registry)
    return registry


class Runtime:
    """Owns live actors and processes batches for the partitions its worker owns."""

    def __init__(
        self,
        store: Store,
        kinds: Sequence[ActorKind],
        *,
        cache_size: int = 10_000,
        idle_passivation: float | None = 600.0,
        clock: Clock = system_clock,
        on_handled: Callable[[str, float], None] | None = None,
    ) -> None:
        """``on_handled(actor_type, seconds)``: told how long each handler ran (metrics)."""
        self.store = store
        self.kinds = {k.type_name: k for k in kinds}
        if len(self.kinds) != len(kinds):
            raise ValueError("two registered actor kinds share a type name")
        self.cache_size = cache_size
        self.idle_passivation = idle_passivation
        self.clock = clock
        self.on_handled = on_handled
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self.loads = 0

    # -- cache -------------------------------------------------------------------------

    def __contains__(self, address: str) -> bool:
        return address in self._cache

    @property
    def cached(self) -> int:
        return len(self._cache)

    def cached_by_type(self) -> dict[str, int]:
        """Live actors per actor type (a walk of the cache: call it now and then)."""
        counts: dict[str, int] = dict.fromkeys(self.kinds, 0)
        for address in self._cache:
            actor_type = address[: address.find("/")]
            counts[actor_type] = counts.get(actor_type, 0) + 1
        return counts

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        """Passivate every actor of partitions this worker no longer owns."""
        gone = set(partitions)
        for address in [a for a, c in self._cache.items() if c.partition in gone]:
            del self._cache[address]

    def forget(self, addresses: Iterable[str]) -> None:
        for address in addresses:
            self._cache.pop(address, None)

    def passivate_idle(self) -> int:
        """Drop actors idle for longer than ``idle_passivation`` seconds and trim the LRU."""
        dropped = 0
        if self.idle_passivation is not None:
            cutoff = time.monotonic() - self.idle_passivation
            while self._cache:
                address, entry = next(iter(self._cache.items()))
                if entry.used_at >= cutoff:
                    break
                del self._cache[address]
                dropped += 1
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
            dropped += 1
        return dropped

    def _load(
        self, kind: ActorKind, address: str, prefetched: LoadedStream | None = None
    ) -> tuple[Actor, int]:
        # ``is None``, not falsiness: a prefetched empty stream (a new actor) is an answer.
        stream = (
            prefetched
            if prefetched is not None
            else self.store.load(address, snapshot_type=kind.snapshot_type)
        )
        self.loads += 1
        if stream.snapshot is not None:
            try:
                return kind.load(address, stream), stream.snapshot.originator_version
            except _LOAD_ERRORS:
                # A snapshot that no longer fits the state model (its shape changed without
                # a new state_version) is only an optimisation: replay the events instead.
                log.warning("snapshot of %s does not load; replaying its events", address)
                stream = self.store.load(address)
        return kind.load(address, stream), 0

    def _actor(self, kind: ActorKind, address: str, partition: int, batch: BatchResult) -> Actor:
        entry = self._cache.get(address)
        if entry is None:
            actor, snap = self._load(kind, address, batch.prefetched.pop(address, None))
            batch.outbox.extend(actor.on_loaded())
            entry = self._cache[address] = _Cached(actor, partition, snap, time.monotonic())
        else:
            self._cache.move_to_end(address)
            entry.used_at = time.monotonic()
            entry.partition = partition
        return entry.actor

    def wake(self, partitions: Iterable[int], partition_of: Callable[[str], int]) -> list[Envelope]:
        """Load the unfinished actors of newly owned partitions; return what they re-send."""
        owned = set(partitions)
        outgoing: list[Envelope] = []
        for kind in self.kinds.values():
            wanted = {
                address: partition_of(address)
                for address in kind.unfinished(self.store)
                if address not in self._cache
            }
            wanted = {a: p for a, p in wanted.items() if p in owned}
            streams = self._prefetch(dict.fromkeys(wanted, kind.snapshot_type))
            for address, p in wanted.items():
                actor, snap = self._load(kind, address, streams.get(address))
                self._cache[address] = _Cached(actor, p, snap, time.monotonic())
                outgoing.extend(actor.on_loaded())
        return outgoing

    def _prefetch(self, wanted: dict[str, str | None]) -> dict[str, LoadedStream]:
        """Load many cold actors' streams in two queries; on bad data, load one by one.

        Loading them one at a time would cost two round trips each; a stream whose data
        cannot be decoded is left to the single load, which parks only its own message.
        """
        if len(wanted) < 2:
            return {}
        try:
            return self.store.load_many(wanted)
        except _LOAD_ERRORS:
            log.warning("could not load %d streams together; loading them one by one", len(wanted))
            return {}

    def tick(self) -> list[Envelope]:
        """Ask every cached actor for messages that have come due."""
        now = self.clock()
        outgoing: list[Envelope] = []
        for entry in self._cache.values():
            outgoing.extend(entry.actor.tick(now))
        return outgoing

    # -- batches -----------------------------------------------------------------------

    def process(
        self,
        deliveries: Sequence[Delivery],
        follow: Callable[[BatchResult], Sequence[Delivery]] | None = None,
        *,
        rounds: int = 16,
    ) -> BatchResult:
        """Handle ``deliveries`` into one batch to commit.

        ``follow`` is asked, after each round, for messages the batch sent that may be
        handled in it too (to actors this worker owns): they join the same commit as what
        caused them, so a chain of actors (a saga's call, the entity's reply, the next
        call) costs one commit instead of one per hop. At most ``rounds`` rounds, so a
        workflow that calls an entity in a loop still commits.
        """
        batch = BatchResult(commit=Commit())
        in_batch: dict[str, Outcome[Any]] = {}
        self._round(batch, deliveries, in_batch)
        for _ in range(rounds - 1):
            more = follow(batch) if follow is not None else ()
            if not more:
                break
            batch.followed.extend(more)
            self._round(batch, more, in_batch)
        batch.settle_timers()
        return batch

    def _round(
        self,
        batch: BatchResult,
        deliveries: Sequence[Delivery],
        in_batch: dict[str, Outcome[Any]],
    ) -> None:
        command_ids = [
            d.envelope.command_id
            for d in deliveries
            if d.envelope is not None and d.envelope.kind != "reply"
        ]
        known = self.store.outcomes(command_ids)
        cold: dict[str, str | None] = {}
        for d in deliveries:
            env = d.envelope
            kind = self.kinds.get(env.actor_type) if env is not None else None
            if env is None or kind is None or env.address in self._cache:
                continue
            if env.kind != "reply" and not _runs_again(env, known.get(env.command_id)):
                continue  # a duplicate: answered from its outcome, its actor not needed
            cold.setdefault(env.address, kind.snapshot_type)
        batch.prefetched.update(self._prefetch(cold))
        for d in deliveries:
            if not d.local:
                batch.last_offsets[d.partition] = d.offset
            if d.envelope is None:
                batch.dead_letters.append((d, d.error or "undecodable message"))
                continue
            self._traced(d, d.envelope, batch, known, in_batch)

    def _traced(
        self,
        d: Delivery,
        env: Envelope,
        batch: BatchResult,
        known: dict[str, Outcome[Any]],
        in_batch: dict[str, Outcome[Any]],
    ) -> None:
        """Handle one message in a span that continues the trace it came with."""
        if not tracing.enabled():
            self._handle(d, env, batch, known, in_batch)
            return
        # The kind and the name are in the span's name; each attribute costs the SDK time.
        attributes: tracing.Attributes = {
            "entityflow.address": env.address,
            "entityflow.command_id": env.command_id,
            "entityflow.timer": env.timer,
        }
        name = f"{env.kind} {env.actor_type}.{env.name}"
        parent = env.traceparent
        with tracing.span(name, parent=parent, kind="consumer", attributes=attributes) as sp:
            self._handle(d, env, batch, known, in_batch)
            outcome = in_batch.get(env.command_id) if env.kind != "reply" else None
            if outcome is not None:
                sp.set("entityflow.outcome", outcome.status)
                if outcome.status != "applied":
                    sp.fail(outcome.error or outcome.status)

    def _handle(
        self,
        d: Delivery,
        env: Envelope,
        batch: BatchResult,
        known: dict[str, Outcome[Any]],
        in_batch: dict[str, Outcome[Any]],
    ) -> None:
        now = self.clock()
        if env.timer is not None:
            if env.timer in batch.timer_changes:
                return  # moved or cancelled earlier in this batch: this firing is stale
            batch.timer_changes[env.timer] = None  # fired: cleared with this commit
        is_command = env.kind != "reply"
        if is_command:
            # Twice in one batch is a duplicate, even a re-drive (one outcome per commit).
            seen = in_batch.get(env.command_id)
            prior = seen or known.get(env.command_id)
            if prior is not None and (seen is not None or not _runs_again(env, prior)):
                if env.reply_to:
                    batch.replies.append((env.reply_to, prior, env.correlation))
                return
        kind = self.kinds.get(env.actor_type)
        if kind is None or "/" not in env.address:
            turn = Turn(
                status="invalid", error=f"no actor type is registered as {env.actor_type!r}"
            )
            self._record(d, env, batch, in_batch, turn, 0, now)
            return
        try:
            actor = self._actor(kind, env.address, d.partition, batch)
        except _LOAD_ERRORS as exc:
            # Its history cannot be read (an event class changed without an upcaster, an
            # @apply method that raises): park the message, keep the partition flowing.
            error = f"cannot load {env.address}: {type(exc).__name__}: {exc}"
            self._record(
                d,
                env,
                batch,
                in_batch,
                Turn(status="dead_lettered", error=error, crashed=True),
                0,
                now,
            )
            return
        before = actor.version
        turn = self._turn(kind, actor, env, now)
        self._record(d, env, batch, in_batch, turn, before, now)
        for name in turn.cancel_timers:
            batch.timer_changes[timer_id(env.address, name)] = None
        for request in turn.timers:
            timer = timer_row(env.address, d.partition, request)
            batch.timer_changes.pop(timer.timer_id, None)  # keep changes in the order made
            batch.timer_changes[timer.timer_id] = timer
        if turn.events or turn.status is not None:
            batch.touched[env.address] = actor.version
        if turn.snapshot is not None and kind.snapshot_type:
            version, state = turn.snapshot
            batch.snapshots.append(Snapshot(env.address, version, kind.snapshot_type, state, now))
        row = actor.visibility()
        if row is not None and turn.events:
            batch.commit.executions.append(row)

    def _turn(self, kind: ActorKind, actor: Actor, env: Envelope, now: datetime) -> Turn:
        on_handled = self.on_handled
        if on_handled is None:
            return actor.handle(env, now)
        started = time.perf_counter()
        turn = actor.handle(env, now)
        on_handled(kind.type_name, time.perf_counter() - started)
        return turn

    def _record(
        self,
        d: Delivery,
        env: Envelope,
        batch: BatchResult,
        in_batch: dict[str, Outcome[Any]],
        turn: Turn,
        version_before: int,
        now: datetime,
    ) -> None:
        commit = batch.commit
        trace_context = tracing.traceparent() if turn.events else None
        for i, event in enumerate(turn.events, start=1):
            commit.events.append(
                RecordedEvent(
                    originator_id=env.address,
                    originator_version=version_before + i,
                    event=event,
                    timestamp=now,
                    command_id=env.command_id,
                    traceparent=trace_context,
                )
            )
        batch.outbox.extend(turn.outbox)
        if turn.crashed:
            batch.dead_letters.append((d, turn.error or "handler crashed"))
        if turn.status is None:
            return
        outcome: Outcome[Any] = Outcome(
            command_id=env.command_id,
            address=env.address,
            command=env.name,
            status=turn.status,
            result=turn.result,
            version=version_before + len(turn.events),
            error=turn.error,
            code=turn.code,
            recorded_at=now,
        )
        commit.outcomes.append(outcome)
        in_batch[env.command_id] = outcome
        if env.reply_to:
            batch.replies.append((env.reply_to, outcome, env.correlation))

    def committed(self, batch: BatchResult) -> None:
        """The batch is durable: take the snapshots that are due, then trim the cache."""
        due: list[Snapshot] = list(batch.snapshots)
        now = self.clock()
        for address in batch.touched:
            entry = self._cache.get(address)
            if entry is None:
                continue
            kind = self.kinds[address.split("/", 1)[0]]
            every = kind.snapshot_every
            version = entry.actor.version
            if not every or not kind.snapshot_type:
                continue
            if version // every > entry.snapshot_version // every:
                state = entry.actor.snapshot_state()
                if state is not None:
                    due.append(Snapshot(address, version, kind.snapshot_type, state, now))
                    entry.snapshot_version = version
        if due:
            try:
                self.store.save_snapshots(due)
            except Exception:  # snapshots are an optimisation; the events are committed
                log.warning("could not save %d snapshots", len(due), exc_info=True)
        self.passivate_idle()

    def discard(self, batch: BatchResult) -> None:
        """The batch did not commit: forget every actor it touched or loaded."""
        self.forget(batch.touched)
        self.forget({e.originator_id for e in batch.commit.events})


def _runs_again(env: Envelope, prior: Outcome[Any] | None) -> bool:
    """Whether a command is run (again): the first time, or re-driven while dead-lettered.

    A re-drive replaces the ``dead_lettered`` outcome (the store allows exactly that
    overwrite); once its outcome reads anything else, further copies are duplicates.
    """
    return prior is None or (env.redrive is not None and prior.status == "dead_lettered")
