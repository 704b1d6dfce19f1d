"""The AsyncAPI 3.0 document of the event stream, generated from the registered entities.

It describes what the relay publishes (``eventstore/relay.py``): the ``{namespace}.events``
channel (and, when per-type topics are on, one channel per entity type), one message per
event type with its payload schema (the record value, whose ``data`` is the event's
fields), its Kafka headers and key, and a ``receive`` operation per channel. Any AsyncAPI
tool can generate a consumer in another language from it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from actors import EntityCatalog
from api.settings import Settings
from api.wiring import domain_registry
from eventstore import DomainEvent, EventRegistry
from eventstore.stream.relay import StreamTopics
from eventstore.stream.schemas import event_schemas, headers_schema, hoisted, is_internal
from sagas import Domain

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING = "0.5.0"
SCHEMAS = "#/components/schemas/"
WORKFLOWS = "workflow"


def entity_streams(
    catalog: EntityCatalog,
    registry: EventRegistry | None = None,
    *,
    workflow_events: bool = False,
) -> dict[str, tuple[type[DomainEvent], ...]]:
    """Event classes by entity type (and, if published, workflow events under 'workflow')."""
    streams = {spec.type_name: tuple(spec.events) for spec in catalog}
    if workflow_events and registry is not None:
        internal = tuple(cls for _, cls in sorted(registry.event_types.items()) if is_internal(cls))
        if internal:
            streams[WORKFLOWS] = internal
    return streams


def _message(cls: type[DomainEvent], entity_type: str) -> dict[str, Any]:
    doc = " ".join((cls.__doc__ or "").split())
    return {
        "name": cls.event_type,
        "title": cls.event_type,
        "summary": doc or f"{cls.event_type} (an event of {entity_type})",
        "contentType": "application/json",
        "headers": {"$ref": f"{SCHEMAS}StreamHeaders"},
        "payload": {"$ref": f"{SCHEMAS}{cls.event_type}.record"},
        "correlationId": {
            "description": "the command that caused the event",
            "location": "$message.payload#/command_id",
        },
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "description": f"the entity address, {entity_type}/<id>",
                },
                "bindingVersion": KAFKA_BINDING,
            }
        },
        "x-entityflow-schema-version": cls.schema_version,
        "x-entityflow-entity-type": entity_type,
    }


def asyncapi_document(
    streams: Mapping[str, Sequence[type[DomainEvent]]],
    *,
    namespace: str,
    partitions: int,
    bootstrap_servers: str | None = None,
    per_type_topics: bool = False,
    version: str = "0.1.0",
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document for the given event types by entity type."""
    topics = StreamTopics(namespace)
    schemas: dict[str, Any] = {"StreamHeaders": headers_schema()}
    messages: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for entity_type, classes in sorted(streams.items()):
        for cls in classes:
            if cls.event_type in owner:
                continue
            owner[cls.event_type] = entity_type
            data, record = hoisted(cls, schemas, SCHEMAS)
            schemas[cls.event_type] = data
            schemas[f"{cls.event_type}.record"] = record
            messages[cls.event_type] = _message(cls, entity_type)

    def channel(address: str, names: Sequence[str], description: str) -> dict[str, Any]:
        return {
            "address": address,
            "title": address,
            "description": description,
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
            "bindings": {
                "kafka": {
                    "topic": address,
                    "partitions": partitions,
                    "bindingVersion": KAFKA_BINDING,
                }
            },
        }

    channels: dict[str, Any] = {
        "events": channel(
            topics.events,
            sorted(messages),
            "Every committed event of every entity, at least once, in per-entity version "
            "order. Key: the entity address. Consumers drop repeats by (entity, version).",
        )
    }
    if per_type_topics:
        for entity_type, classes in sorted(streams.items()):
            names = sorted({c.event_type for c in classes if owner[c.event_type] == entity_type})
            channels[f"events.{entity_type}"] = channel(
                topics.for_type(entity_type),
                names,
                f"The events of {entity_type} entities only (same records as on {topics.events}).",
            )
    operations = {
        f"receive.{key}": {
            "action": "receive",
            "title": f"Receive from {spec['address']}",
            "channel": {"$ref": f"#/channels/{_pointer(key)}"},
            "messages": [
                {"$ref": f"#/channels/{_pointer(key)}/messages/{_pointer(name)}"}
                for name in spec["messages"]
            ],
        }
        for key, spec in channels.items()
    }
    document: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": f"entityflow event stream ({namespace})",
            "version": version,
            "description": (
                "The committed domain events of an entityflow deployment, published by its "
                "relay. Values are JSON records (see each message's payload); headers "
                "carry the event type, schema version, entity version, notification id "
                "and timestamp."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
    if bootstrap_servers:
        document["servers"] = {
            f"broker{n}": {
                "host": host.strip(),
                "protocol": "kafka",
                "description": "a Kafka bootstrap server",
            }
            for n, host in enumerate(bootstrap_servers.split(","))
            if host.strip()
        }
    return document


def _pointer(key: str) -> str:
    """Escape a key for a JSON pointer (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def stream_schemas_json(settings: Settings, domain: Domain, fmt: str = "asyncapi") -> str:
    """The AsyncAPI document (``asyncapi``) or the event schemas (``jsonschema``) as JSON."""
    streams = entity_streams(
        EntityCatalog(domain.entities),
        domain_registry(domain),
        workflow_events=settings.relay_workflow_events,
    )
    if fmt == "jsonschema":
        body: dict[str, Any] = event_schemas(c for classes in streams.values() for c in classes)
    elif fmt == "asyncapi":
        servers = settings.kafka_bootstrap_servers
        body = asyncapi_document(
            streams,
            namespace=settings.namespace,
            partitions=settings.partitions,
            bootstrap_servers=servers if servers != "memory" else None,
            per_type_topics=settings.relay_per_type_topics,
        )
    else:
        raise ValueError(f"unknown schema format {fmt!r}: use asyncapi or jsonschema")
    return json.dumps(body, indent=2)
