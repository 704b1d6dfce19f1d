"""A history that cannot be read parks the command, not the worker (SQLite and PostgreSQL)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import BaseModel

from actors import CommandContext, Entity, Host, InMemoryMailbox, apply, command
from eventstore import Commit, DomainEvent, EventRegistry, RecordedEvent, Snapshot, Store

pytestmark = pytest.mark.anyio


class Counted(DomainEvent):
    event_type = "LoadFail.Counted"
    n: int


class CounterState(BaseModel):
    total: int = 0


class Counter(Entity[CounterState]):
    type_name = "LoadFailCounter"

    @command
    def add(self, ctx: CommandContext, n: int) -> int:
        ctx.emit(Counted(n=n))
        return self.state.total

    @apply
    def _counted(self, event: Counted) -> None:
        if event.n < 0:
            raise ValueError("negative counts cannot be applied")
        self.state.total += event.n


def _seed(url: str, events: list[RecordedEvent], snapshots: tuple[Snapshot, ...] = ()) -> None:
    with Store(url, EventRegistry([Counted])) as store:
        store.commit(Commit(events=events))
        store.save_snapshots(list(snapshots))


async def test_an_apply_that_raises_dead_letters_the_command_and_the_worker_goes_on(
    store_url: str,
) -> None:
    # History written by an older release that the current @apply refuses to fold.
    _seed(store_url, [RecordedEvent("LoadFailCounter/bad", 1, Counted(n=-1))])
    mailbox = InMemoryMailbox(partitions=1)
    async with Host(store_url, [Counter], mailbox=mailbox) as host:
        client = host.client
        doomed = client.signal(Counter.add, "bad", n=1)
        fine = await client.update(Counter.add, "good", n=5)
        assert fine.result == 5
        outcome = client.outcome(doomed)
        assert outcome is not None and outcome.status == "dead_lettered"
        assert "cannot load LoadFailCounter/bad" in (outcome.error or "")
        assert "negative counts" in (outcome.error or "")
        assert [d.error for d in mailbox.dead_letters] == [outcome.error]
        assert host.store.last_version("LoadFailCounter/bad") == 1  # nothing written


async def test_a_snapshot_of_an_old_shape_is_passed_over_for_a_replay(store_url: str) -> None:
    events = [RecordedEvent("LoadFailCounter/c", v, Counted(n=1)) for v in (1, 2, 3)]
    # Same state_version, but the stored shape no longer validates (total is not an int).
    stale = Snapshot("LoadFailCounter/c", 2, "LoadFailCounter@1", {"total": "lots"})
    _seed(store_url, events, (stale,))
    async with Host(store_url, [Counter], mailbox=InMemoryMailbox(partitions=1)) as host:
        result = await host.client.update(Counter.add, "c", n=Decimal(10))
        assert (result.result, result.version) == (13, 4)
