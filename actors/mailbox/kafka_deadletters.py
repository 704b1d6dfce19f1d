"""The Kafka mailbox's dead letters: read a page of them, and send one back, once.

Parked messages are records of ``{namespace}.deadletters`` (the raw bytes as read, the
error and the source position in headers); a dead letter's id is its
``<partition>-<offset>`` there. A re-drive is recorded as a record of
``{namespace}.deadletters.redriven`` keyed by that id, after the message itself was
accepted by the commands topic: a mark that failed to be written leaves a dead letter
that looks not re-driven, and re-driving it again is harmless (the worker runs a
re-driven command only while its outcome reads ``dead_lettered``); the other order
could mark a message that was never sent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from datetime import UTC, datetime

from pydantic import ValidationError

from actors.envelopes import Envelope
from actors.errors import MailboxUnavailableError, UnknownDeadLetterError
from actors.mailbox.protocol import (
    DeadLetterPage,
    DeadLetterRecord,
    dead_letter_id,
    parse_dead_letter_id,
    redrive_envelope,
)
from eventstore.kafka.io import BrokerUnavailableError, KafkaRecord, KafkaSettings
from eventstore.kafka.producer import Producer
from eventstore.kafka.ranges import RangeReader

__all__ = ["KafkaDeadLetters"]

SEND_TIMEOUT = 30.0


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _record(record: KafkaRecord, redriven_at: datetime | None) -> DeadLetterRecord:
    try:
        envelope: Envelope | None = Envelope.decode(record.value)
    except (ValidationError, ValueError):
        envelope = None
    headers = record.headers
    return DeadLetterRecord(
        id=dead_letter_id(record.partition, record.offset),
        raw=record.value,
        envelope=envelope,
        error=headers.get("ef-error", b"").decode(errors="replace"),
        source=headers.get("ef-source", b"").decode(errors="replace"),
        at=_time(record.timestamp_ms),
        redriven_at=redriven_at,
        key=record.key.decode(errors="replace") if record.key is not None else None,
    )


class KafkaDeadLetters:
    """Browses the dead-letter topic and re-drives its records (one per process at a time)."""

    def __init__(
        self,
        settings: KafkaSettings,
        producer: Producer,
        send: Callable[[Envelope], Future[None]],
        *,
        topic: str,
        marks_topic: str,
    ) -> None:
        self._settings = settings
        self._producer = producer
        self._send = send
        self.topic = topic
        self.marks_topic = marks_topic
        self._lock = threading.Lock()
        self._marks_lock = threading.Lock()
        self._redrive_lock = threading.Lock()
        self._readers: dict[str, RangeReader] = {}
        self._marks: dict[str, datetime] = {}
        self._marks_next: dict[int, int] = {}

    def _reader(self, topic: str) -> RangeReader:
        with self._lock:
            reader = self._readers.get(topic)
            if reader is None:
                reader = self._readers[topic] = RangeReader(self._settings, topic)
            return reader

    def _refresh_marks(self) -> dict[str, datetime]:
        """Read the re-drive marks written since the last look (by any process)."""
        reader = self._reader(self.marks_topic)
        with self._marks_lock:
            return self._read_marks(reader)

    def _read_marks(self, reader: RangeReader) -> dict[str, datetime]:
        for p in reader.partitions():
            while True:
                records = reader.read(p, self._marks_next.get(p, 0), 500)
                if not records:
                    break
                for r in records:
                    try:
                        self._marks[r.key.decode() if r.key else ""] = datetime.fromisoformat(
                            json.loads(r.value)["at"]
                        )
                    except (ValueError, KeyError, TypeError):
                        continue  # not a mark of ours; nothing to show for it
                self._marks_next[p] = records[-1].offset + 1
        return dict(self._marks)

    def page(self, after: str | None, limit: int) -> DeadLetterPage:
        start_p, start_o = parse_dead_letter_id(after) if after is not None else (0, -1)
        marks = self._refresh_marks()
        reader = self._reader(self.topic)
        found: list[DeadLetterRecord] = []
        more = False
        for p in reader.partitions():
            if p < start_p:
                continue
            begin = start_o + 1 if p == start_p else 0
            records = reader.read(p, begin, limit + 1 - len(found))
            for r in records:
                found.append(_record(r, marks.get(dead_letter_id(r.partition, r.offset))))
            if len(found) > limit:
                more = True
                found = found[:limit]
                break
        return DeadLetterPage(found, found[-1].id if more else None)

    def at(self, dead_letter: str) -> DeadLetterRecord:
        partition, offset = parse_dead_letter_id(dead_letter)
        reader = self._reader(self.topic)
        if partition not in reader.partitions():
            raise UnknownDeadLetterError(dead_letter)
        records = reader.read(partition, offset, 1)
        if not records or records[0].offset != offset:
            raise UnknownDeadLetterError(dead_letter)  # never written, or aged out
        return _record(records[0], self._refresh_marks().get(dead_letter))

    def redrive(self, dead_letter: str) -> DeadLetterRecord:
        with self._redrive_lock:
            record = self.at(dead_letter)
            self._wait(self._send(redrive_envelope(record)), "send the message again")
            now = datetime.now(UTC)
            mark = json.dumps({"at": now.isoformat(), "command_id": record.command_id})
            try:
                sent = self._producer.send(
                    self.marks_topic, mark.encode(), key=dead_letter.encode()
                )
                sent.result(SEND_TIMEOUT)
            except (BrokerUnavailableError, FutureTimeout) as exc:
                raise MailboxUnavailableError(
                    f"dead letter {dead_letter} was sent again, but the re-drive could not be "
                    f"recorded ({exc}); re-driving it again cannot apply it twice"
                ) from exc
            with self._marks_lock:
                self._marks[dead_letter] = now
            return replace(record, redriven_at=now)

    @staticmethod
    def _wait(future: Future[None], what: str) -> None:
        try:
            future.result(SEND_TIMEOUT)
        except FutureTimeout as exc:
            raise MailboxUnavailableError(
                f"the broker did not confirm in {SEND_TIMEOUT:.0f}s; could not {what}"
            ) from exc

    def close(self) -> None:
        with self._lock:
            readers, self._readers = list(self._readers.values()), {}
        for reader in readers:
            reader.close()
