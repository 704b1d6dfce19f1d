"""The composition root: build stores, mailboxes and hosts from :class:`Settings`.

The CLI (``worker``, ``serve``, ``dev``) and the app factory assemble entityflow here and
nowhere else, so every process kind is wired the same way. The domain (which entities and
workflows exist) is named by a module path, like uvicorn names an app: the module
exports ``ENTITIES`` and optionally ``WORKFLOWS`` and ``KINDS``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from actors import ActorKind, Entity, EntitySpec, Host, InMemoryMailbox, Mailbox
from actors.mailbox.kafka import KafkaMailbox
from actors.mailbox.reply_datagrams import advertised_host
from api.settings import Settings
from eventstore import EventRegistry, Store
from eventstore.kafka.io import KafkaSettings
from eventstore.stream.relay import Relay, RelayOptions
from sagas import Workflow, WorkflowKind


class DomainLoadError(ValueError):
    """The domain module cannot be imported or does not export ENTITIES."""


@dataclass(frozen=True)
class Domain:
    """What a deployment runs: entity classes, workflow kinds, other actor kinds."""

    entities: Sequence[type[Entity[Any]]]
    kinds: Sequence[ActorKind] = field(default_factory=tuple)
    workflows: Sequence[Workflow[Any, Any]] = field(default_factory=tuple)

    @classmethod
    def assemble(
        cls,
        entities: Sequence[type[Entity[Any]]],
        kinds: Sequence[ActorKind] = (),
        workflows: Sequence[Workflow[Any, Any]] = (),
    ) -> Domain:
        """A domain whose workflows all run: each workflow definition without an actor kind
        gets a :class:`~sagas.WorkflowKind` (so workers run it), and each workflow kind's
        definition is listed among the workflows (so the API serves it)."""
        have = {k.type_name for k in kinds}
        all_kinds = list(kinds) + [
            WorkflowKind(wf, entities=entities) for wf in workflows if wf.type_name not in have
        ]
        names = {wf.name for wf in workflows}
        defined = list(workflows) + [
            k.definition
            for k in kinds
            if isinstance(k, WorkflowKind) and k.definition.name not in names
        ]
        return cls(tuple(entities), tuple(all_kinds), tuple(defined))


def load_domain(path: str) -> Domain:
    """Import ``package.module`` and read its ``ENTITIES`` (and ``KINDS``, ``WORKFLOWS``)."""
    try:
        module = importlib.import_module(path)
    except ImportError as exc:
        raise DomainLoadError(f"cannot import the domain module {path!r}: {exc}") from exc
    entities = getattr(module, "ENTITIES", None)
    if not entities:
        raise DomainLoadError(
            f"the domain module {path!r} must export ENTITIES = (EntityClass, ...)"
        )
    return Domain.assemble(
        tuple(entities),
        tuple(getattr(module, "KINDS", ())),
        tuple(getattr(module, "WORKFLOWS", ())),
    )


def kafka_settings(settings: Settings, bootstrap_servers: str | None = None) -> KafkaSettings:
    servers = bootstrap_servers or settings.kafka_bootstrap_servers
    if not servers:
        raise ValueError(
            "no Kafka cluster configured: set ENTITYFLOW_KAFKA_BOOTSTRAP_SERVERS "
            "(or use `entityflow dev`, which starts the embedded broker)"
        )
    return KafkaSettings(bootstrap_servers=servers, client_id=f"entityflow-{settings.namespace}")


def open_mailbox(settings: Settings, bootstrap_servers: str | None = None) -> Mailbox:
    """The Kafka mailbox of the settings' namespace (``memory`` selects the in-memory one)."""
    if (bootstrap_servers or settings.kafka_bootstrap_servers) == "memory":
        return InMemoryMailbox(partitions=settings.partitions, namespace=settings.namespace)
    return KafkaMailbox(
        kafka_settings(settings, bootstrap_servers),
        namespace=settings.namespace,
        partitions=settings.partitions,
        replication_factor=settings.replication_factor,
        reply_host=advertised_host(settings.reply_host),
    )


def open_store(settings: Settings, registry: EventRegistry | None = None) -> Store:
    return Store(settings.store, registry or EventRegistry())


def build_host(
    settings: Settings,
    domain: Domain,
    *,
    mailbox: Mailbox,
    store: Store | None = None,
    run_worker: bool = True,
) -> Host:
    return Host(
        store if store is not None else settings.store,
        domain.entities,
        kinds=domain.kinds,
        mailbox=mailbox,
        snapshot_every=settings.snapshot_every,
        cache_size=settings.actor_cache_size,
        idle_passivation=settings.actor_idle_seconds,
        max_batch=settings.max_batch,
        local_delivery=settings.local_delivery,
        group=settings.group(),
        instance_id=settings.worker_id,
        run_worker=run_worker,
    )


def domain_registry(domain: Domain) -> EventRegistry:
    """Every event class of the domain's entities and actor kinds, in one registry."""
    registry = EventRegistry()
    for cls in domain.entities:
        registry.merge(EntitySpec.of(cls).registry)
    for kind in domain.kinds:
        registry.merge(kind.registry)
    return registry


def build_relay(
    settings: Settings, registry: EventRegistry, bootstrap_servers: str | None = None
) -> Relay:
    """The namespace's event stream relay, on a store connection of its own (caller closes)."""
    options = RelayOptions(
        namespace=settings.namespace,
        partitions=settings.partitions,
        replication_factor=settings.replication_factor,
        per_type_topics=settings.relay_per_type_topics,
        workflow_events=settings.relay_workflow_events,
    )
    kafka = kafka_settings(settings, bootstrap_servers)
    return Relay(Store(settings.store, registry, pool_size=3), kafka, options)
