"""JSON Schemas of the events and the AsyncAPI document: valid, complete, true to the wire."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from pydantic import BaseModel

from actors import EntityCatalog, Host
from api.app import AppParts, create_app
from api.cli import main
from api.openapi.asyncapi import asyncapi_document, entity_streams
from api.server import ServerThread
from api.settings import Settings
from api.wiring import domain_registry, load_domain
from eventstore import Commit, DomainEvent, EventRegistry, RecordedEvent, RegistryError, Store
from eventstore.stream.format import encode_entry
from eventstore.stream.schemas import event_schema, event_schemas, hoisted, stream_record_schema
from examples.shop import ENTITIES
from examples.shop.accounts import AccountOpened, Deposited
from examples.shop.carts import ItemAdded

COMPONENT_KEY = re.compile(r"^[A-Za-z0-9.\-_]+$")


def shop_document(**options: Any) -> dict[str, Any]:
    return asyncapi_document(
        entity_streams(EntityCatalog(ENTITIES)), namespace="shop", partitions=8, **options
    )


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def payload_validator(document: dict[str, Any], message: str) -> Any:
    """A validator for one message's payload, resolving references inside the document."""
    payload = document["components"]["messages"][message]["payload"]
    return jsonschema_rs.validator_for({**document, **payload})


def recorded_value(event: DomainEvent, address: str = "Account/a-1", version: int = 1) -> Any:
    """The record value the relay would publish for ``event`` (through a real store)."""
    registry = EventRegistry([type(event)])
    with Store("sqlite:///:memory:", registry) as store:
        for v in range(1, version):
            store.commit(Commit(events=[RecordedEvent(address, v, event)]))
        store.commit(Commit(events=[RecordedEvent(address, version, event, command_id="c-9")]))
        (entry,) = store.log(store.max_position() - 1, 1)
        return json.loads(encode_entry(store, entry).value)


def test_every_shop_event_has_a_valid_schema_that_accepts_its_json() -> None:
    classes = [cls for spec in EntityCatalog(ENTITIES) for cls in spec.events]
    schemas = event_schemas(classes)
    assert sorted(schemas) == sorted(cls.event_type for cls in classes)
    for cls in classes:
        schema = schemas[cls.event_type]
        assert jsonschema_rs.meta.is_valid(schema), cls.event_type
        assert schema["x-entityflow-schema-version"] == cls.schema_version
    deposited = jsonschema_rs.validator_for(schemas["Deposited"])
    assert deposited.is_valid(json.loads(Deposited(amount=Decimal("12.50")).model_dump_json()))
    assert not deposited.is_valid({})
    assert not deposited.is_valid({"amount": "1", "surprise": True})


def test_the_record_schema_accepts_what_the_relay_publishes() -> None:
    value = recorded_value(Deposited(amount=Decimal("3.25")), version=2)
    validator = jsonschema_rs.validator_for(stream_record_schema(Deposited))
    assert validator.is_valid(value), list(validator.iter_errors(value))
    assert not validator.is_valid({**value, "event_type": "Withdrawn"})
    assert not validator.is_valid({**value, "data": {"amount": "3.25", "x": 1}})
    assert not validator.is_valid({k: v for k, v in value.items() if k != "version"})


def test_the_asyncapi_document_is_complete_and_its_references_resolve() -> None:
    document = shop_document(bootstrap_servers="k1:9092,k2:9092")
    assert document["asyncapi"] == "3.0.0"
    assert {"title", "version", "description"} <= set(document["info"])
    assert [s["host"] for s in document["servers"].values()] == ["k1:9092", "k2:9092"]
    assert all(s["protocol"] == "kafka" for s in document["servers"].values())
    for ref in refs(document):
        resolve(document, ref)
    components = document["components"]
    for section in ("messages", "schemas"):
        bad = [k for k in components[section] if not COMPONENT_KEY.match(k)]
        assert not bad, f"component keys must match {COMPONENT_KEY.pattern}: {bad}"
    for name, schema in components["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name
        # AsyncAPI's default schema format builds on draft 7: each one compiles there too.
        jsonschema_rs.Draft7Validator({**document, **schema})
    channel = document["channels"]["events"]
    assert channel["address"] == "shop.events"
    assert channel["bindings"]["kafka"]["partitions"] == 8
    every_event = {cls.event_type for spec in EntityCatalog(ENTITIES) for cls in spec.events}
    assert set(channel["messages"]) == every_event
    (operation,) = document["operations"].values()
    assert operation["action"] == "receive"
    assert resolve(document, operation["channel"]["$ref"]) is channel
    for ref in (m["$ref"] for m in operation["messages"]):
        assert ref.startswith("#/channels/events/messages/"), "operations name channel messages"
    message = components["messages"]["ItemAdded"]
    assert message["contentType"] == "application/json"
    assert message["bindings"]["kafka"]["key"]["type"] == "string"
    assert set(resolve(document, message["headers"]["$ref"])["required"]) == {
        "ef-event-type",
        "ef-schema-version",
        "ef-entity-version",
        "ef-notification-id",
        "ef-timestamp",
    }


def test_message_payloads_in_the_document_accept_real_records() -> None:
    document = shop_document()
    opened = recorded_value(AccountOpened(owner="Ada"))
    assert payload_validator(document, "AccountOpened").is_valid(opened)
    assert not payload_validator(document, "Deposited").is_valid(opened)
    added = recorded_value(
        ItemAdded(sku="bolt", quantity=2, unit_price=Decimal("1.10")), "Cart/c-1"
    )
    validator = payload_validator(document, "ItemAdded")
    assert validator.is_valid(added), list(validator.iter_errors(added))


def test_per_type_topics_add_one_channel_per_entity_type() -> None:
    document = shop_document(per_type_topics=True)
    channels = document["channels"]
    assert set(channels) == {"events", "events.Account", "events.InventoryItem", "events.Cart"}
    assert channels["events.Account"]["address"] == "shop.events.Account"
    assert set(channels["events.Account"]["messages"]) == {
        cls.event_type for cls in EntityCatalog([ENTITIES[0]]).spec("Account").events
    }
    assert len(document["operations"]) == 4
    for ref in refs(document):
        resolve(document, ref)


class Line(BaseModel):
    sku: str


class OrderPlaced(DomainEvent):
    """An order with lines."""

    event_type = "OrderPlaced"

    lines: list[Line]


def test_nested_models_are_hoisted_and_name_clashes_are_refused() -> None:
    standalone = event_schema(OrderPlaced)
    assert "Line" in standalone["$defs"]
    assert jsonschema_rs.validator_for(standalone).is_valid({"lines": [{"sku": "a"}]})
    components: dict[str, Any] = {}
    data, record = hoisted(OrderPlaced, components, "#/components/schemas/")
    assert "$defs" not in data and "Line" in components
    assert data["description"] == "An order with lines."
    assert record["properties"]["data"] == {"$ref": "#/components/schemas/OrderPlaced"}
    components["Line"] = {"type": "object", "properties": {"other": {"type": "string"}}}
    with pytest.raises(RegistryError, match="two different schemas are named 'Line'"):
        hoisted(OrderPlaced, components, "#/components/schemas/")


@pytest.fixture
def http(tmp_path: Path) -> Iterator[httpx.Client]:
    settings = Settings(namespace="shop", partitions=8, kafka_bootstrap_servers="memory")
    with Host(f"sqlite:///{tmp_path / 'api.db'}", ENTITIES) as host:
        server = ServerThread(create_app(AppParts.from_host(host, settings))).start()
        try:
            with httpx.Client(base_url=server.url, timeout=10) as client:
                yield client
        finally:
            server.stop()


def test_http_serves_the_asyncapi_document_and_the_schemas(http: httpx.Client) -> None:
    document = http.get("/asyncapi.json")
    assert document.status_code == 200
    assert document.json() == json.loads(json.dumps(shop_document(version="0.1.0")))
    schemas = http.get("/schemas/events").json()
    assert schemas["Deposited"] == json.loads(json.dumps(event_schema(Deposited)))
    one = http.get("/schemas/events/ItemAdded")
    assert one.status_code == 200 and one.json()["title"] == "ItemAdded"
    missing = http.get("/schemas/events/NoSuchEvent")
    assert missing.status_code == 404
    assert missing.json()["error"] == "unknown_event_type"
    assert "/schemas/events" in missing.json()["hint"]
    assert "/asyncapi.json" in http.get("/openapi.json").json()["paths"]


def test_the_cli_writes_the_document_and_the_schemas(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENTITYFLOW_NAMESPACE", "shop")
    monkeypatch.setenv("ENTITYFLOW_PARTITIONS", "8")
    target = tmp_path / "asyncapi.json"
    assert main(["schemas", "--domain", "examples.shop", "--output", str(target)]) == 0
    assert json.loads(target.read_text()) == json.loads(json.dumps(shop_document()))
    assert main(["schemas", "--domain", "examples.shop", "--format", "jsonschema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["AccountOpened"]["required"] == ["owner"]
    assert main(["schemas", "--domain", "no.such.module"]) == 2
    assert "cannot import the domain module 'no.such.module'" in capsys.readouterr().err


def test_workflow_events_are_documented_only_when_published() -> None:
    domain = load_domain("examples.shop")
    registry = domain_registry(domain)
    catalog = EntityCatalog(domain.entities)
    internal = [name for name in registry.event_types if name.startswith("wf.")]
    assert internal, "the shop's order saga records workflow events"
    hidden = asyncapi_document(entity_streams(catalog, registry), namespace="s", partitions=2)
    assert not set(internal) & set(hidden["components"]["messages"])
    shown = asyncapi_document(
        entity_streams(catalog, registry, workflow_events=True), namespace="s", partitions=2
    )
    assert set(internal) <= set(shown["channels"]["events"]["messages"])
    for ref in refs(shown):
        resolve(shown, ref)
    assert all(COMPONENT_KEY.match(k) for k in shown["components"]["schemas"])
