"""A worker with no partitions rejoins its group only when the join is stuck, not when idle."""

from __future__ import annotations

from typing import Any

import pytest

from actors import kafka_mailbox
from actors.kafka_mailbox import STUCK_JOIN_SECONDS, KafkaMailboxConsumer


class FakeGroup:
    def __init__(self, state: str) -> None:
        self.state = state
        self.rejoins = 0

    def group_state(self) -> str:
        return self.state

    def rejoin(self) -> None:
        self.rejoins += 1


class FakeMailbox:
    def __init__(self) -> None:
        self.ensured = 0

    def ensure_topics(self) -> None:
        self.ensured += 1


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _consumer(state: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, FakeGroup, Clock]:
    clock = Clock()
    monkeypatch.setattr(kafka_mailbox.time, "monotonic", clock)
    consumer: Any = KafkaMailboxConsumer.__new__(KafkaMailboxConsumer)
    group = FakeGroup(state)
    consumer._consumer = group
    consumer._mailbox = FakeMailbox()
    consumer._last_heal = clock.now
    consumer._unsettled_since = None
    return consumer, group, clock


def _run_for(consumer: Any, clock: Clock, seconds: float) -> None:
    end = clock.now + seconds
    while clock.now < end:
        clock.now += 5.0
        consumer._heal()


def test_a_join_stuck_past_the_limit_starts_over(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer, group, clock = _consumer("REBALANCING", monkeypatch)
    _run_for(consumer, clock, STUCK_JOIN_SECONDS - 6)
    assert group.rejoins == 0
    _run_for(consumer, clock, 10)
    assert group.rejoins == 1
    assert consumer._mailbox.ensured > 0  # the topics are recreated on the way


def test_a_settled_member_without_partitions_stays_put(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer, group, clock = _consumer("STABLE", monkeypatch)
    _run_for(consumer, clock, STUCK_JOIN_SECONDS * 5)
    assert group.rejoins == 0


def test_settling_resets_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer, group, clock = _consumer("UNJOINED", monkeypatch)
    _run_for(consumer, clock, STUCK_JOIN_SECONDS - 6)
    group.state = "STABLE"
    _run_for(consumer, clock, 5)
    group.state = "UNJOINED"
    _run_for(consumer, clock, STUCK_JOIN_SECONDS - 6)
    assert group.rejoins == 0
