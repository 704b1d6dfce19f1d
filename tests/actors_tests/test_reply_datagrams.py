"""Replies by UDP datagram beside the Kafka reply topic.

The routes and sockets are tested on the loopback interface; the round trip runs on the
real broker with a worker in-process: answered by the datagram when it arrives, and by
the topic when every datagram is lost.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from actors import Envelope, Host
from actors.envelopes import OUTCOMES
from actors.mailbox.kafka import KafkaMailbox
from actors.mailbox.reply_datagrams import (
    MAX_DATAGRAM,
    DatagramReceiver,
    DatagramSender,
    advertised_host,
    split_route,
    with_datagrams,
)
from eventstore import Outcome
from eventstore.kafka.io import KafkaSettings
from examples.shop import ENTITIES


def _reply(n: int, result: object = None) -> Outcome[Any]:
    return Outcome(f"c{n}", "Account/a", "deposit", "applied", result)


def test_a_route_names_its_topic_and_its_datagram_address() -> None:
    route = with_datagrams("kafka:ns.replies.abc", "10.1.2.3", 40_000)
    assert split_route(route) == ("kafka:ns.replies.abc", ("10.1.2.3", 40_000))
    assert split_route("kafka:ns.replies.abc") == ("kafka:ns.replies.abc", None)
    for bad in ("host:5000", "127.0.0.1:notaport", "127.0.0.1:99999", "127.0.0.1:-1", ":5", "1:5"):
        assert split_route(f"kafka:t#udp={bad}") == ("kafka:t", None), bad


def test_the_advertised_host_is_a_setting_or_this_hosts_address() -> None:
    assert advertised_host("off") is None
    assert advertised_host("10.0.0.7") == "10.0.0.7"
    assert advertised_host("localhost") == "127.0.0.1"  # resolved once, at start
    with pytest.raises(ValueError, match="does not resolve"):
        advertised_host("no-such-host.invalid")
    auto = advertised_host("auto")
    assert auto is not None
    socket.inet_aton(auto)  # an IPv4 address a worker can send to


class _Inbox:
    def __init__(self) -> None:
        self.batches: list[list[Outcome[Any]]] = []
        self.arrived = threading.Event()

    def __call__(self, replies: Sequence[Outcome[Any]]) -> None:
        self.batches.append(list(replies))
        self.arrived.set()


def test_a_datagram_reaches_the_receiver_of_its_topic_and_no_other() -> None:
    inbox = _Inbox()
    receiver = DatagramReceiver("127.0.0.1", "ns.replies.mine", inbox)
    sender = DatagramSender()
    stray = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        payload = OUTCOMES.dump_json([_reply(1), _reply(2)])
        sender.send(receiver.address, "ns.replies.other", payload)  # an earlier process's
        stray.sendto(b"ns.replies.mine\nnot json", receiver.address)
        stray.sendto(b"\x00garbage", receiver.address)
        sender.send(receiver.address, "ns.replies.mine", payload)
        assert inbox.arrived.wait(5)
        time.sleep(0.1)
        assert [[r.command_id for r in batch] for batch in inbox.batches] == [["c1", "c2"]]
        assert receiver.received == 1
    finally:
        stray.close()
        sender.close()
        receiver.close()


def test_a_batch_too_large_for_a_datagram_is_left_to_the_topic() -> None:
    inbox = _Inbox()
    receiver = DatagramReceiver("127.0.0.1", "t", inbox)
    sender = DatagramSender()
    try:
        big = OUTCOMES.dump_json([_reply(1, "x" * MAX_DATAGRAM)])
        sender.send(receiver.address, "t", big)
        assert sender.sent == 0
        assert not inbox.arrived.wait(0.3)
    finally:
        sender.close()
        receiver.close()


# -- through the broker ----------------------------------------------------------------


def _host(tmp_path: Path, bootstrap: str, namespace: str) -> tuple[Host, KafkaMailbox]:
    mailbox = KafkaMailbox(
        KafkaSettings(bootstrap), namespace=namespace, partitions=2, reply_host="127.0.0.1"
    )
    host = Host(f"sqlite:///{tmp_path / 'store.db'}", ENTITIES, mailbox=mailbox)
    return host, mailbox


def _ask(mailbox: KafkaMailbox, name: str, **args: object) -> Outcome[Any]:
    channel = mailbox.reply_channel()
    try:
        env = Envelope(
            address="Account/a", kind="command", name=name, args=args, reply_to=channel.route
        )
        answer = channel.expect(env.command_id)
        mailbox.send(env).result(10)
        return answer.result(20)
    finally:
        channel.close()


@pytest.mark.kafka
def test_an_update_is_answered_by_datagram(
    tmp_path: Path, kafka_bootstrap: str, namespace: str
) -> None:
    host, mailbox = _host(tmp_path, kafka_bootstrap, namespace)
    try:
        with host:
            channel = mailbox.reply_channel()
            assert "#udp=127.0.0.1:" in channel.route
            env = Envelope(
                address="Account/a",
                kind="command",
                name="open",
                args={"owner": "Ada"},
                reply_to=channel.route,
            )
            answer = channel.expect(env.command_id)
            mailbox.send(env).result(10)
            assert answer.result(20).status == "applied"
            assert channel.datagrams_received == 1
            channel.close()
    finally:
        mailbox.close()


@pytest.mark.kafka
def test_with_every_datagram_lost_the_topic_still_answers(
    tmp_path: Path, kafka_bootstrap: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DatagramSender, "send", lambda self, *args: None)
    host, mailbox = _host(tmp_path, kafka_bootstrap, namespace)
    try:
        with host:
            assert _ask(mailbox, "open", owner="Ada").status == "applied"
            reply = _ask(mailbox, "deposit", amount="7")
            assert Decimal(reply.result) == Decimal("7")
    finally:
        mailbox.close()


@pytest.mark.kafka
def test_a_bad_datagram_address_in_a_route_does_not_stop_the_worker(
    tmp_path: Path, kafka_bootstrap: str, namespace: str
) -> None:
    """A route comes from a message: an address no socket takes is skipped, not raised."""
    host, mailbox = _host(tmp_path, kafka_bootstrap, namespace)
    try:
        with host:
            channel = mailbox.reply_channel()
            topic_route, _ = split_route(channel.route)
            for n, bad in enumerate(("127.0.0.1:99999", "no-such-host.invalid:5000")):
                env = Envelope(
                    address=f"Account/b{n}",
                    kind="command",
                    name="open",
                    args={"owner": "Bo"},
                    reply_to=f"{topic_route}#udp={bad}",
                )
                answer = channel.expect(env.command_id)
                mailbox.send(env).result(10)
                assert answer.result(20).status == "applied"  # by the topic
            assert channel.datagrams_received == 0
            assert _ask(mailbox, "open", owner="Ada").status == "applied"  # still serving
            channel.close()
    finally:
        mailbox.close()


@pytest.mark.kafka
def test_closing_the_mailbox_closes_the_reply_channels_opened_from_it(
    kafka_bootstrap: str, namespace: str
) -> None:
    """A client never closed used to leave its reply reader polling the broker for good."""
    mailbox = KafkaMailbox(KafkaSettings(kafka_bootstrap), namespace=namespace)
    kept, closed_first = mailbox.reply_channel(), mailbox.reply_channel()
    closed_first.close()
    assert kept._thread.is_alive()
    mailbox.close()
    assert not kept._thread.is_alive()
    assert not closed_first._thread.is_alive()
