"""The worker loop over the in-memory mailbox and a real store: poison messages, zombies,
duplicates across restarts.

Workers are stepped by hand (``Host(run_worker=False)`` and ``worker.step()``) where the
interleaving matters, so every test is deterministic. Every test runs on SQLite and on
PostgreSQL.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from actors import CommandFailedError, Host, InMemoryMailbox
from actors.mailbox.protocol import position_name
from eventstore import Outcome, Store
from examples.shop import ENTITIES, Account
from tests.actors_tests.conftest import ALL_ENTITIES
from tests.actors_tests.support import Counter


def _balance(host: Host, entity_id: str) -> Decimal:
    return Decimal(host.client.state(Account, entity_id).state.balance)


# -- poison --------------------------------------------------------------------------


def test_poison_messages_are_dead_lettered_and_the_partition_keeps_flowing(
    store_url: str,
) -> None:
    mailbox = InMemoryMailbox(partitions=1)
    host = Host(store_url, ALL_ENTITIES, mailbox=mailbox, run_worker=False)
    try:
        client = host.client
        first = client.signal(Counter.add, "c", by=1)
        mailbox.append_raw(0, b"\x00not an envelope")
        crash = client.signal(Counter.add_then_crash, "c", by=100)
        plain_crash = client.signal(Counter.crash, "c")
        after = client.signal(Counter.add, "c", by=2)
        assert host.worker.step() == 5

        undecodable, crashed, crashed_plain = mailbox.dead_letters
        assert undecodable.delivery.offset == 1
        assert undecodable.delivery.raw == b"\x00not an envelope"
        assert undecodable.error.startswith("undecodable envelope: ")
        assert crashed.delivery.offset == 2
        assert crashed.error == "RuntimeError: boom after adding 100"
        assert crashed_plain.delivery.offset == 3
        assert crashed_plain.error == "ValueError: handler bug"
        assert host.worker.stats.dead_letters == 3

        outcomes = host.store.outcomes([first, crash, plain_crash, after])
        assert [outcomes[c].status for c in (first, crash, plain_crash, after)] == [
            "applied",
            "dead_lettered",
            "dead_lettered",
            "applied",
        ]
        assert outcomes[crash].error == "RuntimeError: boom after adding 100"
        assert [e.event.model_dump() for e in host.store.read("Counter/c")] == [
            {"by": 1},
            {"by": 2},
        ]
        assert host.store.position(position_name(mailbox, 0)) == 5

        # Later messages on the partition are processed too.
        later = client.signal(Counter.add, "c", by=3)
        mailbox.append_raw(0, b"{}")
        assert host.worker.step() == 2
        assert host.store.outcome(later) is not None
        assert host.client.query(Counter.value, "c").result == 6
        assert len(mailbox.dead_letters) == 4
    finally:
        host.stop()
        mailbox.close()


def test_an_update_whose_handler_crashes_fails_for_its_caller(store_url: str) -> None:
    async def main() -> None:
        async with Host(store_url, ALL_ENTITIES) as host:
            with pytest.raises(CommandFailedError) as failed:
                await host.client.update(Counter.add_then_crash.options(timeout=5), "c", by=1)
            assert failed.value.status == "dead_lettered"
            assert failed.value.reason == "RuntimeError: boom after adding 1"
            ok = await host.client.update(Counter.add.options(timeout=5), "c", by=2)
            assert (ok.result, ok.version) == (2, 1)

    asyncio.run(main())


# -- a zombie worker --------------------------------------------------------------------


def test_a_zombie_worker_cannot_commit_and_resyncs(store_url: str) -> None:
    """Worker a and worker b both believe they own the partition (b is the zombie)."""
    mailbox = InMemoryMailbox(partitions=1)
    a = Host(store_url, ENTITIES, mailbox=mailbox, group="a", run_worker=False)
    b = Host(store_url, ENTITIES, mailbox=mailbox, group="b", run_worker=False)
    name = position_name(mailbox, 0)
    try:
        assert a.worker.step() == 0 and b.worker.step() == 0  # both take partition 0
        assert a.worker.owned == b.worker.owned == [0]

        a.client.signal(Account.open, "x", owner="Ada")
        assert a.worker.step() == 1
        assert a.store.position(name) == 1

        # b never saw a's commit: its position insert is stale, the commit fails whole.
        events_before = b.store.max_position()
        assert b.worker.step() == 0
        assert b.worker.stats.conflicts == 1
        assert b.store.max_position() == events_before
        assert b.store.position(name) == 1
        assert b.runtime.cached == 0

        # Resynced, b goes on from the tracked position, and now a is the stale one.
        b.client.signal(Account.deposit, "x", amount=Decimal("10"))
        assert b.worker.step() == 1
        assert b.store.position(name) == 2
        assert a.worker.step() == 0
        assert a.worker.stats.conflicts == 1
        assert a.runtime.cached == 0
        a.client.signal(Account.deposit, "x", amount=Decimal("5"))
        assert a.worker.step() == 1
        assert b.worker.step() == 0
        assert b.worker.stats.conflicts == 2

        assert a.store.last_version("Account/x") == 3
        assert _balance(a, "x") == Decimal("15")
        assert a.store.position(name) == 3
        # The failed attempts produced no outcome of their own: each command has one.
        assert a.worker.stats.messages + b.worker.stats.messages == 3
    finally:
        a.stop()
        b.stop()
        mailbox.close()


def test_a_stale_worker_with_a_cached_actor_writes_nothing(store_url: str) -> None:
    """The stale worker's batch has real events; the fenced position rejects all of it."""
    mailbox = InMemoryMailbox(partitions=1)
    a = Host(store_url, ENTITIES, mailbox=mailbox, group="a", run_worker=False)
    b = Host(store_url, ENTITIES, mailbox=mailbox, group="b", run_worker=False)
    name = position_name(mailbox, 0)
    try:
        a.client.signal(Account.open, "x", owner="Ada")
        assert a.worker.step() == 1
        assert b.worker.step() == 0  # conflict: a already committed offset 0
        assert b.worker.step() == 0  # resynced, nothing new
        # a deposit is handled by a first, then b, which still tracks position 1 ...
        a.client.signal(Account.deposit, "x", amount=Decimal("3"))
        a.client.signal(Account.open, "y", owner="Yan")
        assert a.worker.step() == 2
        # ... and b processes the same deposit on an actor it loads at v2 (a's view), but
        # its tracked position is 1, not 3: nothing of b's batch may land.
        a.client.signal(Account.deposit, "x", amount=Decimal("4"))
        assert b.worker.step() == 0
        assert b.store.last_version("Account/x") == 2
        assert b.store.position(name) == 3
        assert a.worker.step() == 1
        assert _balance(a, "x") == Decimal("7")
    finally:
        a.stop()
        b.stop()
        mailbox.close()


# -- duplicates through the client ----------------------------------------------------


def test_the_same_command_id_is_applied_once_across_restarts(store_url: str) -> None:
    mailbox = InMemoryMailbox()  # the log outlives the workers, as a broker's would

    async def first_run() -> Outcome[Any]:
        async with Host(store_url, ENTITIES, mailbox=mailbox) as host:
            client = host.client
            await client.update(Account.open, "a", owner="Ada")
            first = await client.update(Account.deposit.options(command_id="d1"), "a", amount="10")
            second = await client.update(Account.deposit.options(command_id="d1"), "a", amount="10")
            assert first == second
            assert (first.command_id, first.result, first.version) == ("d1", Decimal("10"), 2)
            client.signal(Account.deposit.options(command_id="d1"), "a", amount="10")
            await client.update(Account.deposit, "a", amount="1")
            assert host.store.last_version("Account/a") == 3
            return first

    async def second_run(first: Outcome[Any]) -> None:
        async with Host(store_url, ENTITIES, mailbox=mailbox) as host:
            again = await host.client.update(
                Account.deposit.options(command_id="d1"), "a", amount="10"
            )
            assert again == first
            assert host.store.last_version("Account/a") == 3
            assert _balance(host, "a") == Decimal("11")
            assert len(host.client.history(Account, "a")) == 3

    try:
        asyncio.run(second_run(asyncio.run(first_run())))
    finally:
        mailbox.close()


def test_concurrent_updates_of_one_entity_are_serialised(store_url: str) -> None:
    async def main() -> None:
        async with Host(store_url, ENTITIES) as host:
            client = host.client
            await client.update(Account.open, "a", owner="Ada")
            results = await asyncio.gather(
                *(client.update(Account.deposit, "a", amount="1") for _ in range(50))
            )
            assert sorted(r.version or 0 for r in results) == list(range(2, 52))
            balances = sorted(Decimal(r.result) for r in results)
            assert balances == [Decimal(n) for n in range(1, 51)]
            assert _balance(host, "a") == Decimal("50")

    asyncio.run(main())


def test_a_new_in_memory_log_does_not_inherit_old_positions(store_url: str) -> None:
    """A fresh in-memory mailbox is a new log: messages sent before the worker first polls
    must not be skipped because an earlier log of the same store had reached that offset."""
    with Host(store_url, ENTITIES) as host:
        asyncio.run(host.client.update(Account.open, "a", owner="Ada"))
    host = Host(store_url, ENTITIES, run_worker=False)
    try:
        host.client.signal(Account.deposit, "a", amount="5")
        assert host.worker.step() == 1
        assert _balance(host, "a") == Decimal("5")
    finally:
        host.stop()


def test_store_given_to_a_host_is_left_open(store_url: str) -> None:
    from tests.actors_tests.support import registry_of

    with Store(store_url, registry_of(ALL_ENTITIES)) as store:
        with Host(store, ALL_ENTITIES):
            pass
        store.ping()
