"""Cold rehydration of one entity versus its history length, with and without snapshots.

For each length, one ``Account`` history (an opening and deposits) is written straight
through ``Store.commit`` in large batches, with a snapshot every 100 events as the
runtime would take them. A cold load is what the runtime does for an actor that is not
in memory: ``Store.load`` (newest snapshot + tail, or every event) and rehydrate. Each
load is repeated and the median is shown; the database's own caches are warm.
"""

from __future__ import annotations

import statistics
import time
from decimal import Decimal

from actors import EntityKind, EntitySpec
from bench.options import Options
from bench.stores import store_url
from bench.table import Table
from eventstore import Commit, DomainEvent, RecordedEvent, Snapshot, Store
from examples.shop import Account
from examples.shop.accounts import AccountOpened, Deposited

SNAPSHOT_EVERY = 100
CHUNK = 5_000
TARGET_RATIO = 2.0


class History:
    """One Account's history, written the way a runtime would leave it."""

    def __init__(self, store: Store, kind: EntityKind, entity_id: str) -> None:
        self.store = store
        self.spec = kind.spec
        self.address = self.spec.address(entity_id)
        self.entity = self.spec.new(entity_id)

    def extend(self, count: int) -> None:
        """Append ``count`` events in large commits, with a snapshot every 100 events."""
        spec, entity, address = self.spec, self.entity, self.address
        events: list[RecordedEvent] = []
        snapshots: list[Snapshot] = []
        last = entity.version + count
        for version in range(entity.version + 1, last + 1):
            event: DomainEvent = (
                AccountOpened(owner="bench") if version == 1 else Deposited(amount=Decimal("1.25"))
            )
            spec.apply(entity, event)
            events.append(RecordedEvent(address, version, event))
            if version % SNAPSHOT_EVERY == 0:
                snapshots.append(
                    Snapshot(address, version, spec.snapshot_type, spec.snapshot_state(entity))
                )
            if len(events) == CHUNK or version == last:
                self.store.commit(Commit(events=events))
                events = []
        self.store.save_snapshots(snapshots)


def time_load(store: Store, kind: EntityKind, address: str, snapshots: bool) -> tuple[float, int]:
    """Median seconds of a cold load, and how many events each load replays."""

    def load() -> int:
        stream = store.load(address, snapshot_type=kind.snapshot_type if snapshots else None)
        actor = kind.load(address, stream)
        assert actor.version == stream.version
        return len(stream.events)

    replayed = load()  # warm-up: statement caches, imports
    first = time.perf_counter()
    load()
    once = time.perf_counter() - first
    repeats = max(3, min(200, int(0.5 / max(once, 1e-6))))
    times = [once]
    for _ in range(repeats - 1):
        started = time.perf_counter()
        load()
        times.append(time.perf_counter() - started)
    return statistics.median(times), replayed


def run(options: Options) -> Table:
    table = Table(
        f"Cold rehydration of one Account (Store.load + rehydrate, snapshot every "
        f"{SNAPSHOT_EVERY} events, median of repeated loads)",
        ["store", "events", "snapshots", "events replayed", "load ms", "write s"],
    )
    kind = EntityKind(EntitySpec.of(Account), SNAPSHOT_EVERY)
    for store_kind in options.stores:
        with store_url(store_kind, options.pg) as url, Store(url, kind.registry) as store:
            with_snapshots: dict[int, float] = {}
            for length in options.sizes:
                history = History(store, kind, f"h{length}")
                started = time.perf_counter()
                history.extend(length)
                written = time.perf_counter() - started
                for snapshots in (False, True):
                    seconds, replayed = time_load(store, kind, history.address, snapshots)
                    if snapshots:
                        with_snapshots[length] = seconds
                    table.add(
                        store_kind,
                        length,
                        "yes" if snapshots else "no",
                        replayed,
                        seconds * 1000,
                        written if not snapshots else "",
                    )
            # The longest history again, just before its next snapshot: the worst-case tail.
            history.extend(SNAPSHOT_EVERY - 1)
            worst, replayed = time_load(store, kind, history.address, True)
            table.add(store_kind, history.entity.version, "yes", replayed, worst * 1000, "")
            small, large = min(options.sizes), max(options.sizes)
            if small != large:
                ratio = with_snapshots[large] / with_snapshots[small]
                table.target(
                    ratio <= TARGET_RATIO,
                    f"{store_kind}: with snapshots, {large:,} events load in "
                    f"{with_snapshots[large] * 1000:.2f} ms = {ratio:.2f}x the {small:,}-event "
                    f"load ({with_snapshots[small] * 1000:.2f} ms); target <= {TARGET_RATIO:g}x",
                )
                table.notes.append(
                    f"info: {store_kind}: worst case, {SNAPSHOT_EVERY - 1} events after the "
                    f"newest snapshot: {worst * 1000:.2f} ms = "
                    f"{worst / with_snapshots[small]:.2f}x the {small:,}-event load"
                )
    return table
