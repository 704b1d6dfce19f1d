"""A worker with no partitions rejoins its group only when its join hangs, not when idle."""

from __future__ import annotations

from typing import Any

import pytest

from actors.mailbox import kafka_consumers
from actors.mailbox.kafka_consumers import STUCK_JOIN_SECONDS, KafkaMailboxConsumer


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class FakeGroup:
    """Stands in for GroupConsumer: a join that started at ``joining_since`` or none."""

    def __init__(self, clock: Clock, joining_since: float | None) -> None:
        self.clock = clock
        self.joining_since = joining_since
        self.rejoins = 0

    def joining_for(self) -> float:
        return 0.0 if self.joining_since is None else self.clock.now - self.joining_since

    def group_state(self) -> str:
        return "STABLE"  # what kafka-python reports while it hangs waiting for a coordinator

    def rejoin(self) -> None:
        self.rejoins += 1
        self.joining_since = self.clock.now


class FakeMailbox:
    def __init__(self) -> None:
        self.ensured = 0

    def ensure_topics(self) -> None:
        self.ensured += 1


def _consumer(joining: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, FakeGroup, Clock]:
    clock = Clock()
    monkeypatch.setattr(kafka_consumers.time, "monotonic", clock)
    consumer: Any = KafkaMailboxConsumer.__new__(KafkaMailboxConsumer)
    group = FakeGroup(clock, clock.now if joining else None)
    consumer._consumer = group
    consumer._mailbox = FakeMailbox()
    consumer._last_heal = clock.now
    return consumer, group, clock


def _run_for(consumer: Any, clock: Clock, seconds: float) -> None:
    end = clock.now + seconds
    while clock.now < end:
        clock.now += 5.0
        consumer._heal()


def test_a_join_unanswered_past_the_limit_starts_over(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer, group, clock = _consumer(True, monkeypatch)
    _run_for(consumer, clock, STUCK_JOIN_SECONDS - 6)
    assert group.rejoins == 0
    _run_for(consumer, clock, 10)
    assert group.rejoins == 1
    assert consumer._mailbox.ensured > 0  # the topics are recreated on the way
    _run_for(consumer, clock, STUCK_JOIN_SECONDS - 10)
    assert group.rejoins == 1  # the new join gets its own full wait


def test_an_answered_member_without_partitions_stays_put(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer, group, clock = _consumer(False, monkeypatch)
    _run_for(consumer, clock, STUCK_JOIN_SECONDS * 5)
    assert group.rejoins == 0
