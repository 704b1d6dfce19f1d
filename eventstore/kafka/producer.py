"""The producer behind every append to Kafka: sends that resolve once acknowledged.

Mailbox envelopes, replies and stream records all go through :class:`Producer`; it is
``acks=all`` and idempotent, so a resolved future is a record the cluster keeps, and it
outlives a broker that forgot its producer state.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from eventstore.kafka.io import BrokerUnavailableError, KafkaRecord, KafkaSettings, connect

log = logging.getLogger("entityflow.kafka")


class Producer:
    """An idempotent, ``acks=all`` producer whose sends resolve ``concurrent.futures``.

    An idempotent producer whose broker lost its producer state (a restarted embedded
    broker, an expired producer id) enters a fatal state and fails every later send;
    this wrapper notices and replaces it, so a process outlives its broker.
    """

    def __init__(self, settings: KafkaSettings, *, linger_ms: int | None = None) -> None:
        self.settings = settings
        self._linger_ms = settings.linger_ms if linger_ms is None else linger_ms
        self._lock = threading.Lock()
        self._failures = 0
        self._rebuilt_at = 0.0
        self._producer: KafkaProducer = self._make()

    def _make(self) -> KafkaProducer:
        settings = self.settings
        return connect(
            "producer",
            settings,
            lambda: KafkaProducer(
                **settings.common(),
                acks="all",
                enable_idempotence=True,
                # entityflow exports its own Prometheus metrics; kafka-python's per-record
                # sensors cost CPU on every send for numbers nobody reads.
                metrics_enabled=False,
                linger_ms=self._linger_ms,
                delivery_timeout_ms=settings.delivery_timeout_ms,
                max_block_ms=settings.request_timeout_ms,
                retry_backoff_ms=100,
            ),
        )

    def _fatal(self) -> bool:
        manager = getattr(self._producer, "_transaction_manager", None)
        check = getattr(manager, "has_fatal_error", None)
        return bool(check()) if callable(check) else self._failures >= 3

    def _heal(self) -> None:
        """Replace a producer stuck in a fatal state (at most every few seconds)."""
        if not self._failures or not self._fatal():
            return
        with self._lock:
            if time.monotonic() - self._rebuilt_at < 2.0 or not self._fatal():
                return
            self._rebuilt_at = time.monotonic()
            old = self._producer
            log.warning("the Kafka producer is in a fatal state; replacing it")
            self._producer = self._make()
            self._failures = 0
        with contextlib.suppress(Exception):
            old.close(timeout=1)

    def partitions(self, topic: str) -> int:
        """How many partitions the topic has now (asks the cluster if not known yet)."""
        try:
            found = self._producer.partitions_for(topic)
        except KafkaError as exc:
            raise BrokerUnavailableError(f"cannot read metadata of {topic}: {exc}") from exc
        if not found:
            raise BrokerUnavailableError(f"topic {topic} has no partitions (does it exist?)")
        return len(found)

    def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Mapping[str, bytes] | None = None,
        partition: int | None = None,
    ) -> Future[KafkaRecord]:
        done: Future[KafkaRecord] = Future()
        hdrs = list((headers or {}).items())
        self._heal()
        try:
            pending = self._producer.send(
                topic, value=value, key=key, headers=hdrs, partition=partition
            )
        except (KafkaError, AssertionError) as exc:
            self._failures += 1
            done.set_exception(BrokerUnavailableError(f"Kafka refused a send to {topic}: {exc}"))
            return done

        def ok(md: Any) -> None:
            self._failures = 0
            if not done.done():
                record = KafkaRecord(
                    topic, md.partition, md.offset, key, value, dict(hdrs), md.timestamp
                )
                done.set_result(record)

        def failed(exc: BaseException) -> None:
            self._failures += 1
            if not done.done():
                done.set_exception(
                    BrokerUnavailableError(f"Kafka did not acknowledge a send to {topic}: {exc}")
                )

        pending.add_callback(ok)
        pending.add_errback(failed)
        return done

    def send_all(
        self,
        topic: str,
        records: Sequence[tuple[bytes | None, bytes, Mapping[str, bytes], int | None]],
    ) -> Future[int]:
        """Send ``(key, value, headers, partition)`` records; one future for all of them.

        It resolves to their count once the broker acknowledged every one, or fails with
        the first error. Cheaper than :meth:`send` per record (the event stream relay sends
        thousands per second); ``partition=None`` uses the default partitioner.
        """
        done: Future[int] = Future()
        remaining = [len(records)]
        lock = threading.Lock()
        if not records:
            done.set_result(0)
            return done

        def ok(_: Any) -> None:
            with lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                self._failures = 0
                if not done.done():
                    done.set_result(len(records))

        def failed(exc: BaseException) -> None:
            self._failures += 1
            with lock:
                if done.done():
                    return
                done.set_exception(
                    BrokerUnavailableError(f"Kafka did not acknowledge a send to {topic}: {exc}")
                )

        self._heal()
        for key, value, headers, partition in records:
            try:
                pending = self._producer.send(
                    topic, value=value, key=key, headers=list(headers.items()), partition=partition
                )
            except (KafkaError, AssertionError) as exc:
                failed(exc)
                break
            pending.add_callback(ok)
            pending.add_errback(failed)
        return done

    def flush(self, timeout: float | None = None) -> None:
        try:
            self._producer.flush(timeout=timeout)
        except KafkaError as exc:
            raise BrokerUnavailableError(f"Kafka flush failed: {exc}") from exc

    def close(self, timeout: float = 5.0) -> None:
        self._producer.close(timeout=timeout)
