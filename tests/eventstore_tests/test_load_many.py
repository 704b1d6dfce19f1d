"""Loading many streams at once gives what loading each alone gives (SQLite, PostgreSQL)."""

from __future__ import annotations

from eventstore import Commit, DomainEvent, EventRegistry, RecordedEvent, Snapshot, Store


class Ticked(DomainEvent):
    event_type = "LoadMany.Ticked"
    n: int


def test_load_many_matches_load_one_by_one(store_url: str) -> None:
    with Store(store_url, EventRegistry([Ticked])) as store:
        events = [
            RecordedEvent(stream, v, Ticked(n=v))
            for stream, last in (("S/plain", 3), ("S/snapped", 6), ("S/old-shape", 4))
            for v in range(1, last + 1)
        ]
        store.commit(Commit(events=events))
        store.save_snapshots(
            [
                Snapshot("S/snapped", 2, "T@1", {"n": 2}),
                Snapshot("S/snapped", 4, "T@1", {"n": 4}),
                Snapshot("S/snapped", 5, "T@0", {"n": 5}),  # newest, but of another shape
                Snapshot("S/old-shape", 3, "T@0", {"n": 3}),
            ]
        )
        wanted: dict[str, str | None] = {
            "S/plain": "T@1",
            "S/snapped": "T@1",
            "S/old-shape": "T@1",
            "S/none": "T@1",
            "S/untyped": None,
        }
        together = store.load_many(wanted)
        assert set(together) == set(wanted)
        snapped = together["S/snapped"]
        assert snapped.snapshot is not None and snapped.snapshot.originator_version == 4
        assert [e.version for e in snapped.events] == [5, 6]
        assert together["S/old-shape"].snapshot is None
        assert [e.version for e in together["S/old-shape"].events] == [1, 2, 3, 4]
        assert not together["S/none"] and together["S/none"].events == []
        for stream, snapshot_type in wanted.items():
            alone = store.load(stream, snapshot_type=snapshot_type)
            if stream == "S/snapped":
                # Alone, the newest snapshot (another shape) is passed over for a full
                # replay; together, the newest fitting one is used. Same state either way.
                assert [e.version for e in alone.events][-2:] == [5, 6]
                continue
            assert together[stream].version == alone.version
            assert [e.event for e in together[stream].events] == [e.event for e in alone.events]
