"""Co-located delivery: a worker keeps messages to actors of its own partitions in memory.

The queue's order rules are tested on their own; the worker's use of it (fencing a batch
of only co-located messages, retrying it after a lost race, handing messages back to the
broker when it lets go) runs on the in-memory mailbox and a real store (SQLite and
PostgreSQL). The order sagas that run through it on the real broker, with workers killed,
are in ``tests/integration/test_saga_crashes.py``.
"""

from __future__ import annotations

from decimal import Decimal

from actors import Envelope, Host, InMemoryMailbox
from actors.local_delivery import LocalDeliveries
from actors.mailbox.protocol import position_name
from examples.shop import ENTITIES, Account
from tests.actors_tests.conftest import ALL_ENTITIES


def _env(address: str, n: int) -> Envelope:
    return Envelope(address=address, kind="command", name="deposit", args={"n": n})


def _names(deliveries: list[Envelope]) -> list[int]:
    return [e.args["n"] for e in deliveries]


# -- the queue -----------------------------------------------------------------------


def test_a_new_partition_holds_its_messages_until_the_log_is_read_to_where_it_ended() -> None:
    """Messages this worker sent through the broker before it owned the partition come first."""
    local = LocalDeliveries()
    local.assigned(0, log_end=0)
    local.assigned(1, log_end=5)
    for n in range(3):
        local.put(1, _env("A/held", n))
        local.put(0, _env("A/free", 10 + n))
    read_up_to = {0: 0, 1: 3}

    taken, orphans = local.take(read_up_to.__getitem__, limit=100)
    assert [d.envelope.args["n"] for d in taken if d.envelope] == [10, 11, 12]
    assert all(d.local and d.partition == 0 for d in taken)
    assert orphans == [] and len(local) == 3

    assert not local.has_ready(read_up_to.__getitem__)  # held: the poll may wait
    read_up_to[1] = 5  # the worker has now read what was in the log at assignment
    assert local.has_ready(read_up_to.__getitem__)
    taken, _ = local.take(read_up_to.__getitem__, limit=100)
    assert [d.envelope.args["n"] for d in taken if d.envelope] == [0, 1, 2]
    assert len(local) == 0 and local.delivered == 6


def test_a_batch_takes_at_most_its_room_and_the_rest_keeps_its_order() -> None:
    local = LocalDeliveries()
    local.assigned(0, log_end=0)
    for n in range(5):
        local.put(0, _env("A/a", n))
    first, _ = local.take(lambda p: 0, limit=2)
    second, _ = local.take(lambda p: 0, limit=10)
    assert [d.envelope.args["n"] for d in first if d.envelope] == [0, 1]
    assert [d.envelope.args["n"] for d in second if d.envelope] == [2, 3, 4]


def test_a_lost_partition_gives_back_its_messages_in_order_and_takes_no_more() -> None:
    local = LocalDeliveries()
    local.assigned(0, log_end=0)
    local.assigned(1, log_end=0)
    for n in range(4):
        local.put(n % 2, _env("A/x", n))
    leaving = local.revoked([1])
    assert _names(leaving) == [1, 3]
    assert not local.accepts(1) and local.accepts(0)
    taken, _ = local.take(lambda p: 0, limit=10)
    assert [d.envelope.args["n"] for d in taken if d.envelope] == [0, 2]


def test_a_failed_batch_puts_its_messages_back_in_front() -> None:
    local = LocalDeliveries()
    local.assigned(0, log_end=0)
    local.assigned(1, log_end=0)
    for n in range(3):
        local.put(0, _env("A/x", n))
    failed, _ = local.take(lambda p: 0, limit=2)
    local.put(0, _env("A/x", 3))
    local.put_back(failed)
    taken, _ = local.take(lambda p: 0, limit=10)
    assert [d.envelope.args["n"] for d in taken if d.envelope] == [0, 1, 2, 3]

    # Put back after the partition was lost: they go to the broker, not to this worker.
    local.put_back(taken)
    local.revoked([0])
    local.put_back(taken)
    again, orphans = local.take(lambda p: 0, limit=10)
    assert again == [] and _names(orphans) == [0, 1, 2, 3]


def test_draining_returns_everything_and_forgets_the_partitions() -> None:
    local = LocalDeliveries()
    local.assigned(0, log_end=0)
    local.put(0, _env("A/x", 1))
    assert _names(local.drain()) == [1]
    assert len(local) == 0 and not local.accepts(0)


# -- the worker ----------------------------------------------------------------------


def _open(address: str, owner: str) -> Envelope:
    return Envelope(address=address, kind="command", name="open", args={"owner": owner})


def test_a_worker_handles_messages_to_its_own_partitions_without_the_broker(
    store_url: str,
) -> None:
    mailbox = InMemoryMailbox(partitions=2)
    host = Host(store_url, ENTITIES, mailbox=mailbox, run_worker=False)
    try:
        assert host.worker.step() == 0  # joins, owns both partitions
        host.worker.dispatch(_open("Account/x", "Ada"))
        host.worker.dispatch(
            Envelope(address="Account/x", kind="command", name="deposit", args={"amount": "7"})
        )
        assert host.worker.step() == 2
        assert host.worker.stats.local_messages == 2
        assert all(mailbox.log_length(p) == 0 for p in range(2))  # nothing in the logs
        assert Decimal(host.client.query(Account.balance, "x").result) == Decimal("7")
        # A batch of only co-located messages claims the partition's position unmoved.
        partition = mailbox.partition_of("Account/x")
        assert host.store.position(position_name(mailbox, partition)) == 0
    finally:
        host.stop()
        mailbox.close()


def test_with_co_located_delivery_off_every_message_goes_through_the_log(
    store_url: str,
) -> None:
    mailbox = InMemoryMailbox(partitions=1)
    host = Host(store_url, ENTITIES, mailbox=mailbox, run_worker=False, local_delivery=False)
    try:
        assert host.worker.step() == 0
        host.worker.dispatch(_open("Account/x", "Ada"))
        assert mailbox.log_length(0) == 1
        assert host.worker.step() == 1
        assert host.worker.stats.local_messages == 0
        assert host.store.last_version("Account/x") == 1
    finally:
        host.stop()
        mailbox.close()


def test_a_zombie_cannot_commit_a_batch_of_co_located_messages(store_url: str) -> None:
    """Two workers believe they own partition 0; b holds only co-located messages.

    The two mailboxes share one name (so one tracked position) but not their logs: b
    reads nothing from the broker, so its batch moves no position, and must still fail
    because a has moved the position b last saw.
    """
    mb_a = InMemoryMailbox(partitions=1, namespace="shared")
    mb_b = InMemoryMailbox(partitions=1, namespace="shared")
    a = Host(store_url, ENTITIES, mailbox=mb_a, run_worker=False)
    b = Host(store_url, ENTITIES, mailbox=mb_b, run_worker=False)
    name = position_name(mb_a, 0)
    try:
        assert a.worker.step() == 0 and b.worker.step() == 0
        a.client.signal(Account.open, "x", owner="Ada")
        assert a.worker.step() == 1
        assert a.store.position(name) == 1

        b.worker.dispatch(_open("Account/y", "Yan"))
        assert b.worker.step() == 0
        assert b.worker.stats.conflicts == 1
        assert b.store.last_version("Account/y") == 0

        # Resynced to the stored position, b retries the message it kept: not lost.
        assert b.worker.step() == 1
        assert b.worker.stats.local_messages == 1
        assert b.store.last_version("Account/y") == 1
        assert b.store.position(name) == 1
    finally:
        a.stop()
        b.stop()
        mb_a.close()
        mb_b.close()


def test_a_worker_that_lets_go_sends_what_it_kept_through_the_broker(store_url: str) -> None:
    mailbox = InMemoryMailbox(partitions=1)
    a = Host(store_url, ENTITIES, mailbox=mailbox, run_worker=False)
    b = Host(store_url, ENTITIES, mailbox=mailbox, run_worker=False)
    try:
        assert a.worker.step() == 0
        a.worker.dispatch(_open("Account/x", "Ada"))
        a.worker.dispatch(
            Envelope(address="Account/x", kind="command", name="deposit", args={"amount": "2"})
        )
        assert mailbox.log_length(0) == 0
        a.worker.close()  # stops before handling them
        assert mailbox.log_length(0) == 2
        assert b.worker.step() == 2
        assert Decimal(b.client.query(Account.balance, "x").result) == Decimal("2")
    finally:
        a.stop()
        b.stop()
        mailbox.close()


def test_a_co_located_message_whose_handler_crashes_is_dead_lettered_whole(
    store_url: str,
) -> None:
    mailbox = InMemoryMailbox(partitions=1)
    host = Host(store_url, ALL_ENTITIES, mailbox=mailbox, run_worker=False)
    try:
        assert host.worker.step() == 0
        crash = Envelope(address="Counter/c", kind="command", name="crash")
        host.worker.dispatch(crash)
        assert host.worker.step() == 1
        (parked,) = mailbox.dead_letters
        assert parked.delivery.local
        assert Envelope.decode(parked.delivery.raw) == crash  # the message itself, not b""
        assert parked.error == "ValueError: handler bug"
    finally:
        host.stop()
        mailbox.close()
