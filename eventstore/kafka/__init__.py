"""Kafka's home in entityflow: the brokers entityflow starts on one machine.

:class:`ApacheKafka` is what the tests, the benchmarks and ``entityflow dev`` run;
:class:`TansuBroker` is only the zero-install fallback of ``entityflow dev`` on a
machine without Java (see its module for what it costs). :func:`local_broker` picks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from eventstore.kafka.apache import ApacheKafka, java_available, kafka_classpath, kafka_version
from eventstore.kafka.local import BrokerLaunchError, answers, free_port
from eventstore.kafka.tansu import TansuBroker


class LocalBroker(Protocol):
    """A broker process entityflow started on this machine."""

    @property
    def bootstrap_servers(self) -> str: ...

    @property
    def running(self) -> bool: ...

    def start(self, timeout: float = ...) -> LocalBroker: ...

    def stop(self, timeout: float = ...) -> None: ...


def local_broker(
    home: Path,
    *,
    port: int | None = None,
    controller_port: int | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> ApacheKafka | TansuBroker:
    """Apache Kafka with its data in ``home`` where Java is present; tansu where it is not."""
    if java_available():
        return ApacheKafka(home, port=port, controller_port=controller_port, say=say)
    say(
        "no Java on this machine: falling back to tansu, a memory-only broker. It keeps "
        "nothing across a restart (queued commands are lost) and slows down as its log "
        "grows; install Java 17 to run on Apache Kafka"
    )
    return TansuBroker(port)


__all__ = [
    "ApacheKafka",
    "BrokerLaunchError",
    "LocalBroker",
    "TansuBroker",
    "answers",
    "free_port",
    "java_available",
    "kafka_classpath",
    "kafka_version",
    "local_broker",
]
