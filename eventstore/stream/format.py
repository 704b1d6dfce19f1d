"""The event stream's wire format: one Kafka record per committed event.

- **topic**: ``{namespace}.events`` (and, optionally, ``{namespace}.events.{EntityType}``);
- **key**: the entity's address (``Account/acct-7``), so one entity's events share a
  partition and keep their order;
- **value**: a JSON object, :class:`StreamEvent`: the event's metadata and, under
  ``data``, the event's fields at its current schema version;
- **headers**: ``ef-event-type``, ``ef-schema-version``, ``ef-entity-version``,
  ``ef-notification-id``, ``ef-timestamp`` (ISO 8601), for consumers that route without
  parsing JSON; and ``traceparent`` (W3C) when the event was recorded inside a trace, so a
  consumer can continue it.

:func:`encode_entry` builds a record from a row of the notification log;
:func:`decode_stream_record` reads one back; :func:`format_line` renders it for a person.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import from_json

from eventstore.errors import EventStoreError, explain
from eventstore.kafka.io import KafkaRecord
from eventstore.records import LogEntry
from eventstore.sql.codec import SNAPSHOT_PREFIX
from eventstore.sql.store import Store

WORKFLOW_EVENT_PREFIX = "wf."
HEADER_EVENT_TYPE = "ef-event-type"
HEADER_SCHEMA_VERSION = "ef-schema-version"
HEADER_ENTITY_VERSION = "ef-entity-version"
HEADER_NOTIFICATION_ID = "ef-notification-id"
HEADER_TIMESTAMP = "ef-timestamp"
HEADER_TRACEPARENT = "traceparent"
HEADERS = (
    HEADER_EVENT_TYPE,
    HEADER_SCHEMA_VERSION,
    HEADER_ENTITY_VERSION,
    HEADER_NOTIFICATION_ID,
    HEADER_TIMESTAMP,
)


class StreamRecordError(EventStoreError, ValueError):
    """A record on the event stream is not an entityflow stream event."""


class StreamEvent(BaseModel):
    """The JSON value of one record on the event stream."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: str = Field(description="the event's stable type name")
    schema_version: int = Field(ge=1, description="the version of the event's schema in data")
    entity: str = Field(description="the entity's address, EntityType/entity-id (the record key)")
    entity_type: str
    entity_id: str
    version: int = Field(ge=1, description="the entity's version after this event (1, 2, ...)")
    position: int = Field(ge=1, description="the event's notification id in the store's log")
    timestamp: datetime = Field(description="when the event was recorded")
    command_id: str | None = Field(default=None, description="the command that caused it")
    data: dict[str, Any] = Field(description="the event's fields")


def split_address(address: str) -> tuple[str, str]:
    """``Account/acct-7`` -> (``Account``, ``acct-7``); an address without '/' has no type."""
    kind, sep, ident = address.partition("/")
    return (kind, ident) if sep else ("", address)


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    """One record the relay sends: where, and what."""

    position: int
    key: bytes
    value: bytes
    headers: dict[str, bytes]
    event_type: str
    entity_type: str
    version: int
    as_stored: bool = False
    """True when the registry could not decode the event: data is published as stored."""


def _stored_parts(n: LogEntry) -> tuple[dict[str, Any], bytes]:
    """The stored metadata, and the event's JSON exactly as stored (no re-encoding)."""
    state = n.state
    # The codec writes b'{"m":' + meta + b',"d":' + data + b'}'; inside JSON strings a
    # quote is escaped, so the first ',"d":' is the separator.
    split = state.find(b',"d":')
    if state.startswith(b'{"m":') and split > 0 and state.endswith(b"}"):
        meta = from_json(state[5:split])
        if isinstance(meta, dict):
            return meta, state[split + 5 : -1]
    body = from_json(state)
    if not isinstance(body, dict):
        return {}, b"null"
    meta = body.get("m")
    data = json.dumps(body.get("d", {}), separators=(",", ":")).encode()
    return (meta if isinstance(meta, dict) else {}), data


def encode_entry(store: Store, n: LogEntry) -> OutgoingRecord:
    """Turn a notification into a stream record, upcasting the event to its current schema.

    An event stored at the current schema version is published as stored (no decoding);
    an older one is upcast by the registry. An event whose type the registry does not
    know (or cannot upcast) is still published, with its stored data and stored schema
    version: the stream must stay complete.
    """
    meta, data = _stored_parts(n)
    event_type = n.topic
    schema_version = int(meta.get("v", 1))
    timestamp = str(meta.get("t", ""))
    command_id = meta.get("c")
    as_stored = False
    try:
        current = store.registry.event_class(event_type).schema_version
    except EventStoreError:
        as_stored = True
    else:
        if schema_version != current:
            # An older shape: upcast it through the registry, publish the current one.
            try:
                event = store.decode(n).event
            except EventStoreError:
                as_stored = True
            else:
                schema_version = event.schema_version
                data = event.__pydantic_serializer__.to_json(event)
    address = str(n.stream_id)
    entity_type, entity_id = split_address(address)
    head = json.dumps(
        {
            "event_type": event_type,
            "schema_version": schema_version,
            "entity": address,
            "entity_type": entity_type,
            "entity_id": entity_id,
            "version": n.version,
            "position": n.position,
            "timestamp": timestamp,
            "command_id": command_id,
        },
        separators=(",", ":"),
    ).encode()
    value = head[:-1] + b',"data":' + data + b"}"
    headers = {
        HEADER_EVENT_TYPE: event_type.encode(),
        HEADER_SCHEMA_VERSION: str(schema_version).encode(),
        HEADER_ENTITY_VERSION: str(n.version).encode(),
        HEADER_NOTIFICATION_ID: str(n.position).encode(),
        HEADER_TIMESTAMP: timestamp.encode(),
    }
    trace_context = meta.get("p")
    if isinstance(trace_context, str):
        headers[HEADER_TRACEPARENT] = trace_context.encode()
    return OutgoingRecord(
        n.position,
        address.encode(),
        value,
        headers,
        event_type,
        entity_type,
        n.version,
        as_stored,
    )


def is_snapshot(n: LogEntry) -> bool:
    return n.topic.startswith(SNAPSHOT_PREFIX)


def is_workflow_event(event_type: str) -> bool:
    return event_type.startswith(WORKFLOW_EVENT_PREFIX)


def decode_stream_record(record: KafkaRecord) -> StreamEvent:
    """Parse a record's value; :class:`StreamRecordError` says what is wrong with it."""
    try:
        event = StreamEvent.model_validate_json(record.value)
    except ValidationError as exc:
        raise StreamRecordError(
            f"record {record.topic}#{record.partition}@{record.offset} is not a stream "
            f"event: {explain(exc)}"
        ) from exc
    if record.key is not None and record.key != event.entity.encode():
        raise StreamRecordError(
            f"record {record.topic}#{record.partition}@{record.offset}: key {record.key!r} "
            f"is not the event's entity {event.entity!r}"
        )
    return event


def format_line(event: StreamEvent, *, width: int = 160) -> str:
    """One readable line: time, entity and version, event type, fields, log position."""
    when = event.timestamp.strftime("%H:%M:%S.%f")[:-3]
    fields = " ".join(f"{k}={_short(v)}" for k, v in event.data.items())
    line = (
        f"{when}  {event.entity} v{event.version}  {event.event_type}"
        f"{'' if event.schema_version == 1 else f'@v{event.schema_version}'}"
        f"  {fields}".rstrip()
    )
    suffix = f"  #{event.position}"
    if len(line) + len(suffix) > width:
        line = line[: max(0, width - len(suffix) - 1)] + "…"
    return line + suffix


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if isinstance(value, str) and (not value or any(c.isspace() for c in value)):
        text = json.dumps(value)
    return text if len(text) <= 60 else text[:59] + "…"
