"""A Kafka client call that never returns is released, logged, and its client replaced.

kafka-python 3.0 makes a caller wait with no timeout for the client's IO thread; these
tests make that wait last forever on purpose (a request that never completes) and check
that the watchdog ends it and that a group member goes on with a fresh client.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError
from kafka.future import Future
from kafka.net.selector import NetworkSelector

from eventstore.kafka.admin import Admin
from eventstore.kafka.group_consumer import GroupConsumer
from eventstore.kafka.io import KafkaSettings
from eventstore.kafka.stuck_calls import WATCHDOG, StuckCallWatchdog


async def _never() -> None:
    await Future()  # a request the IO thread never completes


def test_a_call_waiting_forever_on_the_io_thread_is_released_with_a_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    net = NetworkSelector()
    net.start()
    watchdog = StuckCallWatchdog(interval=0.05)
    started = time.monotonic()
    try:
        with (
            caplog.at_level(logging.ERROR, "entityflow.kafka"),
            watchdog.guard(net, "the poll on orders", limit=0.3) as call,
            pytest.raises(KafkaTimeoutError, match="the poll on orders was stuck"),
        ):
            net.run(_never)
    finally:
        net.close()
    assert call.tripped
    assert 0.3 <= time.monotonic() - started < 5
    assert "the poll on orders has not returned after" in caplog.text
    assert "IO thread alive" in caplog.text and "1 callers waiting" in caplog.text


def test_a_call_that_returns_in_time_is_left_alone() -> None:
    net = NetworkSelector()
    net.start()
    watchdog = StuckCallWatchdog(interval=0.05)

    async def quick() -> int:
        return 7

    try:
        with watchdog.guard(net, "a quick call", limit=0.3) as call:
            assert net.run(quick) == 7
        time.sleep(0.5)  # past the bound, but the call is over: nothing to release
        assert watchdog.check() == []
    finally:
        net.close()
    assert not call.tripped


@pytest.mark.kafka
def test_a_group_member_whose_poll_hangs_rejoins_with_a_fresh_client(
    kafka_bootstrap: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = KafkaSettings(kafka_bootstrap)
    topic = f"{namespace}.stuck"
    admin = Admin(settings)
    admin.ensure_topics({topic: 2})
    member = GroupConsumer(settings, topic, f"{namespace}-stuck", stuck_after=1.0)
    try:
        deadline = time.monotonic() + 30
        while not member.assignment():
            assert time.monotonic() < deadline, "no partitions"
            member.poll(0.2, 10)
        member.take_rebalances()
        wedged: Any = member._consumer
        wedged.poll = lambda **_: wedged._net.run(_never)  # its next poll never returns
        with caplog.at_level(logging.ERROR, "entityflow.kafka"):
            done = threading.Event()
            result: list[object] = []
            threading.Thread(
                target=lambda: (result.append(member.poll(0.2, 10)), done.set()), daemon=True
            ).start()
            assert done.wait(1.0 + WATCHDOG._interval + 10), "the stuck poll was never released"
        assert result == [[]]
        assert "has not returned after" in caplog.text
        assert member._consumer is not wedged
        assert member.take_rebalances()[0].revoked == [0, 1]
        deadline = time.monotonic() + 30
        while member.assignment() != [0, 1]:
            assert time.monotonic() < deadline, (
                f"no partitions after the rejoin: {member.group_state()}"
            )
            member.poll(0.2, 10)
    finally:
        member.close()
        admin.close()


@pytest.mark.parametrize("limit", [0, -1.0, float("nan")])
def test_a_bound_that_is_not_a_positive_number_of_seconds_is_refused(limit: float) -> None:
    with (
        pytest.raises(ValueError, match="positive number of seconds"),
        StuckCallWatchdog().guard(object(), "a poll", limit=limit),
    ):
        pass  # never reached: the guard refuses before the call
