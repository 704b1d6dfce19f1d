"""The Mailbox contract, run against both implementations: in memory and on Apache Kafka.

The worker and the clients rely only on what :mod:`actors.mailbox.protocol` promises; the
in-memory mailbox may stand in for Kafka in unit tests only while it keeps the same
promises, which these tests hold both to.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from actors import (
    ACTIVITY_ROUTE,
    AlreadyRedrivenError,
    Delivery,
    Envelope,
    InMemoryMailbox,
    Mailbox,
    MailboxConsumer,
    TaskConsumer,
    UnknownDeadLetterError,
)
from actors.mailbox.kafka import KafkaMailbox
from eventstore import Outcome
from eventstore.kafka.io import KafkaSettings

PARTITIONS = 3


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def mailbox(request: pytest.FixtureRequest, namespace: str) -> Iterator[Mailbox]:
    made: Mailbox
    if request.param == "memory":
        made = InMemoryMailbox(partitions=PARTITIONS, namespace=namespace)
    else:
        bootstrap: str = request.getfixturevalue("kafka_bootstrap")
        made = KafkaMailbox(KafkaSettings(bootstrap), namespace=namespace, partitions=PARTITIONS)
    try:
        yield made
    finally:
        made.close()


class Listener:
    """Does what a worker does on assignment: seeks each partition to its tracked position.

    The mailbox drops what a poll fetched for a partition whose owner changed during
    it (fetched from a position nobody chose), so an owner that did not seek would
    skip those records; here the tracked position is the start of the log.
    """

    def __init__(self) -> None:
        self.assigned: set[int] = set()
        self.consumer: MailboxConsumer | None = None

    def on_assigned(self, partitions: list[int]) -> None:
        self.assigned |= set(partitions)
        assert self.consumer is not None
        for p in partitions:
            self.consumer.seek(p, self.consumer.offsets(p)[0])

    def on_revoked(self, partitions: list[int]) -> None:
        self.assigned -= set(partitions)


def envelope(address: str, n: int, **extra: Any) -> Envelope:
    return Envelope(address=address, kind="command", name="deposit", args={"n": n}, **extra)


def read(consumer: MailboxConsumer, count: int, timeout: float = 30.0) -> list[Delivery]:
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += consumer.poll(0.2, 500)
    return got


def test_an_address_always_goes_to_the_same_partition(mailbox: Mailbox) -> None:
    assert mailbox.partitions == PARTITIONS
    spread = {mailbox.partition_of(f"Account/a-{n}") for n in range(100)}
    assert spread == set(range(PARTITIONS))  # every partition is used
    assert all(
        mailbox.partition_of("Account/a-7") == mailbox.partition_of("Account/a-7") for _ in range(5)
    )
    assert mailbox.name  # positions are tracked under it: it must name this log


def test_every_acknowledged_envelope_is_delivered_once_in_send_order_per_address(
    mailbox: Mailbox,
) -> None:
    sent = [envelope(f"Account/a-{n % 5}", n) for n in range(40)]
    for ack in [mailbox.send(e) for e in sent]:
        ack.result(30)
    listener = Listener()
    consumer = listener.consumer = mailbox.consumer("workers", listener)
    try:
        got = read(consumer, len(sent))
        assert listener.assigned == set(range(PARTITIONS))
        assert sorted(d.envelope.command_id for d in got if d.envelope) == sorted(
            e.command_id for e in sent
        )
        assert all(
            d.envelope == next(e for e in sent if e.command_id == d.envelope.command_id)
            for d in got
            if d.envelope
        )
        for n in range(5):
            address = f"Account/a-{n}"
            order = [
                d.envelope.args["n"] for d in got if d.envelope and d.envelope.address == address
            ]
            assert order == [e.args["n"] for e in sent if e.address == address]
            assert {d.partition for d in got if d.envelope and d.envelope.address == address} == {
                mailbox.partition_of(address)
            }
        for p in range(PARTITIONS):
            offsets = [d.offset for d in got if d.partition == p]
            assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
            first, end = consumer.offsets(p)
            assert end - first == len(offsets)
    finally:
        consumer.close()


def test_seek_reads_a_partition_again_from_an_offset(mailbox: Mailbox) -> None:
    address = "Account/seek"
    sent = [envelope(address, n) for n in range(6)]
    for e in sent:
        mailbox.send(e).result(30)
    partition = mailbox.partition_of(address)
    listener = Listener()
    consumer = listener.consumer = mailbox.consumer("workers", listener)
    try:
        first = read(consumer, len(sent))
        mine = [d for d in first if d.partition == partition]
        consumer.seek(partition, mine[3].offset)
        again = [d for d in read(consumer, 3) if d.partition == partition]
        assert [d.envelope.args["n"] for d in again if d.envelope] == [3, 4, 5]
    finally:
        consumer.close()


def test_a_reply_reaches_the_channel_that_expects_it(mailbox: Mailbox) -> None:
    channel = mailbox.reply_channel()
    try:
        answer = channel.expect("c-1")
        other = channel.expect("c-2")
        mailbox.send_replies(
            channel.route, [Outcome("c-1", "Account/a", "deposit", "applied", "20.00", version=3)]
        )
        got = answer.result(30)
        assert (got.command_id, got.status, got.result, got.version) == (
            "c-1",
            "applied",
            "20.00",
            3,
        )
        assert not other.done()  # a reply is for its own command only
        channel.forget("c-2")
    finally:
        channel.close()


def test_a_dead_letter_is_accepted_and_the_partition_flows_on(mailbox: Mailbox) -> None:
    address = "Account/dl"
    mailbox.send(envelope(address, 1)).result(30)
    mailbox.send(envelope(address, 2)).result(30)
    listener = Listener()
    consumer = listener.consumer = mailbox.consumer("workers", listener)
    try:
        got = read(consumer, 2)
        mailbox.dead_letter(got[0], "cannot be handled: test").result(30)
        assert [d.envelope.args["n"] for d in got if d.envelope] == [1, 2]
    finally:
        consumer.close()


def test_dead_letters_are_listed_in_order_with_their_error_and_source(mailbox: Mailbox) -> None:
    address = "Account/dl-list"
    for n in range(3):
        mailbox.send(envelope(address, n)).result(30)
    listener = Listener()
    consumer = listener.consumer = mailbox.consumer("workers", listener)
    try:
        got = read(consumer, 3)
        for d in got:
            mailbox.dead_letter(d, f"cannot take n={d.envelope.args['n'] if d.envelope else '?'}")
        mailbox.flush(30)
        first = mailbox.list_dead_letters(limit=2)
        assert first.next_after == first.dead_letters[-1].id
        rest = mailbox.list_dead_letters(after=first.next_after, limit=2)
        assert rest.next_after is None
        parked = first.dead_letters + rest.dead_letters
        assert [p.error for p in parked] == [f"cannot take n={n}" for n in range(3)]
        assert [p.raw for p in parked] == [d.raw for d in got]
        assert len({p.id for p in parked}) == 3
        one = parked[1]
        assert (one.entity_type, one.entity_id, one.command) == ("Account", "dl-list", "deposit")
        assert one.source.endswith(f"#{got[1].partition}@{got[1].offset}")
        assert one.redriven_at is None and one.at.tzinfo is not None
        assert mailbox.dead_letter_at(one.id) == one
    finally:
        consumer.close()


def test_a_redrive_sends_the_message_again_once_marked(mailbox: Mailbox) -> None:
    address = "Account/dl-redrive"
    sent = envelope(address, 7, reply_to="somewhere-long-gone")
    mailbox.send(sent).result(30)
    listener = Listener()
    consumer = listener.consumer = mailbox.consumer("workers", listener)
    try:
        (got,) = read(consumer, 1)
        mailbox.dead_letter(got, "handler crashed").result(30)
        (parked,) = mailbox.list_dead_letters().dead_letters
        redriven = mailbox.redrive(parked.id)
        assert redriven.redriven_at is not None
        (again,) = read(consumer, 1)
        assert again.envelope is not None
        assert again.envelope.command_id == sent.command_id  # the same command
        assert again.envelope.redrive == parked.id
        assert again.envelope.reply_to is None  # that caller is gone; its outcome is stored
        assert again.envelope.args == sent.args
        assert again.partition == got.partition and again.offset > got.offset
        assert mailbox.dead_letter_at(parked.id).redriven_at == redriven.redriven_at
        with pytest.raises(AlreadyRedrivenError):
            mailbox.redrive(parked.id)
        assert read(consumer, 1, timeout=2) == []  # the refusal sent nothing
    finally:
        consumer.close()


def test_unknown_and_malformed_dead_letter_ids_are_told_apart(mailbox: Mailbox) -> None:
    with pytest.raises(UnknownDeadLetterError):
        mailbox.dead_letter_at("0-123456")
    with pytest.raises(UnknownDeadLetterError):
        mailbox.redrive("9-0")
    with pytest.raises(ValueError, match="partition-offset"):
        mailbox.dead_letter_at("not-an-id")
    assert mailbox.list_dead_letters().dead_letters == []


def task(n: int) -> Envelope:
    return Envelope(address=f"{ACTIVITY_ROUTE}charge", kind="command", name="charge", args={"n": n})


def read_tasks(consumer: TaskConsumer, count: int, timeout: float = 30.0) -> list[Delivery]:
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += consumer.poll(0.2, 500)
    return got


def test_activity_tasks_go_to_activity_workers_never_to_actors(mailbox: Mailbox) -> None:
    sent = [task(n) for n in range(12)]
    for ack in [mailbox.send(e) for e in sent]:
        ack.result(30)
    mailbox.send(envelope("Account/a-1", 1)).result(30)
    tasks = mailbox.task_consumer("activity-workers")
    listener = Listener()
    actors = listener.consumer = mailbox.consumer("workers", listener)
    try:
        got = read_tasks(tasks, len(sent))
        assert sorted(d.envelope.args["n"] for d in got if d.envelope) == list(range(12))
        to_actors = read(actors, 1)
        assert [d.envelope.address for d in to_actors if d.envelope] == ["Account/a-1"]
        assert not read(actors, 1, timeout=1.0)  # no task among them
    finally:
        tasks.close()
        actors.close()


def test_what_a_task_worker_committed_is_not_run_again_the_rest_is(mailbox: Mailbox) -> None:
    for ack in [mailbox.send(task(n)) for n in range(10)]:
        ack.result(30)
    first = mailbox.task_consumer("activity-workers")
    got = read_tasks(first, 10)
    assert len(got) == 10
    # Finished: the first four of each partition; the rest was running when it died.
    done: dict[int, int] = {}
    for d in sorted(got, key=lambda d: (d.partition, d.offset)):
        if sum(1 for o in got if o.partition == d.partition and o.offset < d.offset) < 2:
            done[d.partition] = d.offset + 1
    first.commit(done)
    first.close()
    expected = sorted(
        d.envelope.args["n"] for d in got if d.envelope and d.offset >= done[d.partition]
    )
    assert 0 < len(expected) < 10
    second = mailbox.task_consumer("activity-workers")
    try:
        again = read_tasks(second, len(expected))
        again += read_tasks(second, 1, timeout=1.0)  # and nothing more
        assert sorted(d.envelope.args["n"] for d in again if d.envelope) == expected
    finally:
        second.close()


def test_a_paused_task_consumer_fetches_nothing_until_resumed(mailbox: Mailbox) -> None:
    tasks = mailbox.task_consumer("activity-workers")
    try:
        deadline = time.monotonic() + 30
        while not tasks.take_assigned():  # joined (and nothing there yet)
            assert time.monotonic() < deadline, "no partitions assigned"
            assert tasks.poll(0.2, 500) == []
        tasks.pause()
        mailbox.send(task(1)).result(30)
        assert read_tasks(tasks, 1, timeout=2.0) == []
        tasks.resume()
        assert [d.envelope.args["n"] for d in read_tasks(tasks, 1) if d.envelope] == [1]
    finally:
        tasks.close()
