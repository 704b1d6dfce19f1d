"""The composition root: build stores, mailboxes and hosts from :class:`Settings`.

The CLI (``worker``, ``serve``, ``dev``) and the app factory assemble entityflow here and
nowhere else, so every process kind is wired the same way. The domain (which entities and
workflows exist) is named by a module path, like uvicorn names an app: the module
exports ``DOMAIN`` (a :class:`~sagas.Domain`), or ``ENTITIES`` and ``WORKFLOWS``.
"""

from __future__ import annotations

import importlib
import os
import sys

from actors import InMemoryMailbox, Mailbox
from actors.mailbox.kafka import KafkaMailbox
from actors.mailbox.reply_datagrams import advertised_host
from actors.metrics import MetricsServer, serve_metrics
from api.settings import Settings
from eventstore import EventRegistry, Store
from eventstore.kafka.io import KafkaSettings
from eventstore.stream.relay import Relay, RelayOptions
from sagas import Domain, Host


class DomainLoadError(ValueError):
    """The domain module cannot be imported or does not say what it runs."""


def load_domain(path: str | None) -> Domain:
    """Import ``package.module`` and take its ``DOMAIN`` (or its ``ENTITIES``, ``WORKFLOWS``
    and ``ACTIVITIES``)."""
    if not path:
        raise DomainLoadError(
            "name the module that exports the domain: --domain package.module (it exports "
            "DOMAIN = Domain(ENTITIES, WORKFLOWS), or ENTITIES and WORKFLOWS); "
            "`entityflow dev` runs the shop example, --domain examples.shop"
        )
    # The domain is the user's code, in the directory they run from (as uvicorn's
    # --app-dir); the installed packages are entityflow's only.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(path)
    except ImportError as exc:
        raise DomainLoadError(f"cannot import the domain module {path!r}: {exc}") from exc
    domain = getattr(module, "DOMAIN", None)
    if isinstance(domain, Domain):
        return domain
    entities = getattr(module, "ENTITIES", None)
    if not entities:
        raise DomainLoadError(
            f"the domain module {path!r} must export DOMAIN = Domain(ENTITIES, WORKFLOWS) "
            "or ENTITIES = (EntityClass, ...)"
        )
    return Domain(
        tuple(entities),
        tuple(getattr(module, "WORKFLOWS", ())),
        activities=tuple(getattr(module, "ACTIVITIES", ())),
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
    run_activities: bool | None = None,
) -> Host:
    """The domain's node; it runs activities where ``run_activities`` (default: where it
    runs the worker) and ``ENTITYFLOW_ACTIVITY_CONCURRENCY`` allows."""
    activities = run_worker if run_activities is None else run_activities
    return domain.host(
        store if store is not None else settings.store,
        mailbox=mailbox,
        snapshot_every=settings.snapshot_every,
        cache_size=settings.actor_cache_size,
        idle_passivation=settings.actor_idle_seconds,
        max_batch=settings.max_batch,
        local_delivery=settings.local_delivery,
        group=settings.group(),
        instance_id=settings.worker_id,
        run_worker=run_worker,
        activity_concurrency=settings.activity_concurrency,
        run_activities=activities and settings.activity_concurrency > 0,
    )


def domain_registry(domain: Domain) -> EventRegistry:
    """Every event class the domain records, in one registry."""
    return domain.registry()


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


class RelayFigures:
    """The worker metrics' view of the relay running beside it (read at scrape time)."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def relay_figures(self) -> tuple[bool, int, int, int]:
        stats = self.relay.stats
        newest = self.relay.store.max_position() if stats.active else 0
        return stats.active, stats.published, stats.position, newest


def serve_worker_metrics(
    settings: Settings, host: Host, relay: Relay | None, *, port: int | None = None
) -> MetricsServer | None:
    """Serve the worker's metrics on ``ENTITYFLOW_WORKER_METRICS_PORT`` (else ``port``;
    neither: not at all), the relay's among them when one runs beside it."""
    if relay is not None:
        host.metrics.watch_relay(RelayFigures(relay))
    chosen = settings.worker_metrics_port if settings.worker_metrics_port is not None else port
    if chosen is None:
        return None
    return serve_metrics(host.metrics.registry, settings.worker_metrics_host, chosen)
