"""JSON Schemas of the event stream, for consumers that are not written in Python.

- :func:`event_schema`: the schema of one event type's fields (the ``data`` of a stream
  record), self-contained (JSON Schema 2020-12, nested models under ``$defs``), tagged
  with its stable type name and schema version;
- :func:`stream_record_schema`: the schema of a whole record value
  (:class:`~eventstore.stream.format.StreamEvent`) whose ``data`` is one event type;
- :func:`hoisted`: the same schemas with nested definitions moved into a shared mapping,
  for documents (AsyncAPI, OpenAPI) that keep definitions under ``components/schemas``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from eventstore.errors import RegistryError
from eventstore.events import DomainEvent, JSONDict
from eventstore.stream.format import HEADER_TRACEPARENT, HEADERS, StreamEvent

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _tag(schema: JSONDict, cls: type[DomainEvent]) -> JSONDict:
    schema["title"] = cls.event_type
    schema["x-entityflow-event-type"] = cls.event_type
    schema["x-entityflow-schema-version"] = cls.schema_version
    if cls.__doc__ and "description" not in schema:
        schema["description"] = " ".join(cls.__doc__.split())
    return schema


def event_schema(cls: type[DomainEvent]) -> JSONDict:
    """The JSON Schema of one event type's fields, self-contained."""
    schema = _tag(cls.model_json_schema(mode="serialization"), cls)
    return {"$schema": SCHEMA_DIALECT, **schema}


def event_schemas(event_types: Iterable[type[DomainEvent]]) -> dict[str, JSONDict]:
    """Schemas by event type name, sorted by name."""
    found = {cls.event_type: cls for cls in event_types}
    return {name: event_schema(found[name]) for name in sorted(found)}


def _envelope(ref_template: str) -> JSONDict:
    schema = StreamEvent.model_json_schema(mode="serialization", ref_template=ref_template)
    schema["description"] = (
        "One record of the entityflow event stream. Key: the entity address. Repeats "
        "(same entity and version) can occur: drop any version at or below the last one "
        "seen for the entity."
    )
    return schema


def stream_record_schema(cls: type[DomainEvent]) -> JSONDict:
    """The JSON Schema of a record value carrying ``cls`` (self-contained)."""
    data = event_schema(cls)
    data.pop("$schema")
    defs = data.pop("$defs", {})
    record = _envelope("#/$defs/{model}")
    record["title"] = f"{cls.event_type} record"
    props = record["properties"]
    props["event_type"] = {"const": cls.event_type, "type": "string"}
    props["schema_version"] = {"const": cls.schema_version, "type": "integer"}
    props["data"] = data
    if defs:
        record["$defs"] = {**record.get("$defs", {}), **defs}
    return {"$schema": SCHEMA_DIALECT, **record}


def headers_schema() -> JSONDict:
    """The Kafka headers of every stream record (values are UTF-8 strings)."""
    descriptions = {
        "ef-event-type": "the event's stable type name",
        "ef-schema-version": "the schema version of the value's data (decimal integer)",
        "ef-entity-version": "the entity's version after this event (decimal integer)",
        "ef-notification-id": "the event's position in the store's log (decimal integer)",
        "ef-timestamp": "when the event was recorded (ISO 8601)",
    }
    properties: JSONDict = {h: {"type": "string", "description": descriptions[h]} for h in HEADERS}
    properties[HEADER_TRACEPARENT] = {
        "type": "string",
        "description": "the W3C trace context of the work that recorded the event (only "
        "when it was traced)",
    }
    return {"type": "object", "properties": properties, "required": list(HEADERS)}


def hoisted(
    cls: type[DomainEvent], components: dict[str, JSONDict], prefix: str
) -> tuple[JSONDict, JSONDict]:
    """(data schema, record schema) of ``cls`` with definitions moved into ``components``.

    References point at ``{prefix}{Name}`` (e.g. ``#/components/schemas/Money``); a name
    already defined differently is an error rather than a silent overwrite.
    """
    template = prefix + "{model}"
    data = _tag(cls.model_json_schema(mode="serialization", ref_template=template), cls)
    record = _envelope(template)
    for defs in (data.pop("$defs", {}), record.pop("$defs", {})):
        for name, definition in defs.items():
            known = components.get(name)
            if known is not None and known != definition:
                raise RegistryError(
                    f"two different schemas are named {name!r} (in {cls.event_type}); "
                    "rename one of the models"
                )
            components[name] = definition
    record = copy.deepcopy(record)
    record["title"] = f"{cls.event_type} record"
    props = record["properties"]
    props["event_type"] = {"const": cls.event_type, "type": "string"}
    props["schema_version"] = {"const": cls.schema_version, "type": "integer"}
    props["data"] = {"$ref": prefix + cls.event_type}
    return data, record


def is_internal(cls: type[DomainEvent]) -> bool:
    """Workflow history events are internal: not on the stream unless asked for."""
    return cls.event_type.startswith("wf.")


__all__ = [
    "SCHEMA_DIALECT",
    "event_schema",
    "event_schemas",
    "headers_schema",
    "hoisted",
    "is_internal",
    "stream_record_schema",
]
