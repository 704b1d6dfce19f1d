"""The app factory: ``create_app(settings_or_parts)`` builds the FastAPI app.

The API talks to actors only through the mailbox (it sends envelopes and waits for
replies on its own reply channel) and reads state, history and outcomes from the store.
Give it :class:`AppParts` (a store, a mailbox and the domain) to run against parts you
built yourself, e.g. an in-process :class:`~actors.Host` in tests, or :class:`Settings`
(plus the domain) to have it open the configured store and Kafka cluster.

Routes are generated from the registered entity classes (and, with the saga layer,
workflow definitions): see ``routes_commands.py``, ``routes_entities.py`` and
``routes_system.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

import actors
import api.routes.approvals as approval_routes
import api.routes.catalog as catalog_routes
import api.routes.commands as command_routes
import api.routes.console as console_routes
import api.routes.deadletters as deadletter_routes
import api.routes.entities as entity_routes
import api.routes.schemas as schema_routes
import api.routes.system as system_routes
import api.routes.timeline as timeline_routes
import api.routes.workflows as workflow_routes
from actors import Mailbox
from actors.mailbox.kafka import KafkaTopics
from api.context import ApiContext, Check
from api.errors import install as install_error_handlers
from api.gateways.fast_path import CommandFastPath
from api.metrics import MetricsMiddleware
from api.openapi.schemas import argument_schemas
from api.routes.commands import command_table
from api.settings import Settings
from api.tracing import TracingMiddleware
from api.wiring import kafka_settings, open_mailbox
from eventstore import Store
from eventstore.kafka.admin import Admin
from sagas import Domain, Host

log = logging.getLogger("entityflow.api")
PRUNE_EVERY = 60.0
DESCRIPTION = (
    "Durable entities over HTTP. Every command of every registered entity type can be "
    "sent as a **signal** (`/signals/{command}`: 202 once queued) or an **update** "
    "(`/updates/{command}`: 200 with the result and the entity's new version). State, "
    "queries and history are read from the event store; `?version=N` reads the past. "
    "Commands accept an `Idempotency-Key` header (IETF draft). Errors have one shape: "
    "`{error, message, hint, command_id?, details?}`."
)
Installer = Callable[[FastAPI, ApiContext], None]


@dataclass(frozen=True)
class AppParts:
    """What an app runs against, built by the caller (who also closes it)."""

    store: Store
    mailbox: Mailbox
    domain: Domain
    settings: Settings = field(default_factory=Settings)
    checks: Mapping[str, Check] = field(default_factory=dict)
    closers: Sequence[Callable[[], None]] = ()
    """Called at shutdown, for parts the app opened itself."""

    @classmethod
    def from_host(cls, host: actors.Host, settings: Settings | None = None) -> AppParts:
        """The parts of an in-process host (its store, its mailbox, its domain)."""
        domain = host.domain if isinstance(host, Host) else Domain(host.catalog.entities())
        return cls(host.store, host.mailbox, domain, settings or Settings())


def open_parts(settings: Settings, domain: Domain) -> AppParts:
    """Open the configured store and Kafka mailbox for an API process."""
    registry = domain.registry()
    store = Store(settings.store, registry)
    try:
        mailbox = open_mailbox(settings)
    except BaseException:
        store.close()
        raise
    checks: dict[str, Check] = {}
    if settings.kafka_bootstrap_servers not in (None, "memory"):
        checks["broker"] = broker_check(settings)
    return AppParts(
        store, mailbox, domain, settings, checks=checks, closers=(mailbox.close, store.close)
    )


def broker_check(settings: Settings) -> Check:
    """A readiness check: the cluster answers and has the commands topic."""
    topic = KafkaTopics(settings.namespace).commands
    admins: list[Admin] = []

    def check() -> None:
        if not admins:
            admins.append(Admin(kafka_settings(settings)))
        if admins[0].topic_id(topic) is None:
            raise ConnectionError(f"the broker has no topic {topic}")

    return check


def _installers(ctx: ApiContext) -> list[Installer]:
    """Route groups, in matching order (generated routes before their catch-alls)."""
    components = argument_schemas(list(ctx.catalog))
    return [
        system_routes.install,
        schema_routes.install,
        lambda app, c: command_routes.install(app, c, components),
        lambda app, c: entity_routes.install(app, c, components),
        timeline_routes.install,
        workflow_routes.install,
        approval_routes.install,
        catalog_routes.install,
        console_routes.install,
        deadletter_routes.install,
    ]


def create_app(source: AppParts | Settings, domain: Domain | None = None) -> FastAPI:
    """Build the API over ready parts, or over the store and cluster that settings name."""
    if isinstance(source, Settings):
        if domain is None:
            raise ValueError("create_app(settings) needs the domain (the entity classes)")
        parts = open_parts(source, domain)
    else:
        parts = source
    settings = parts.settings
    ctx = ApiContext.build(
        settings, parts.store, parts.mailbox, parts.domain, checks=dict(parts.checks)
    )
    catalog = ctx.catalog

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx.start()
        pruning = asyncio.create_task(_prune_forever(ctx))
        try:
            yield
        finally:
            pruning.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pruning
            ctx.close()
            for close in parts.closers:
                try:
                    close()
                except Exception as exc:  # shutting down anyway; say what did not close
                    log.warning("could not close %s cleanly: %s", close, exc)

    app = FastAPI(
        title="entityflow",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    # Inner to the metrics middleware, so fast-path requests are timed and counted too.
    app.add_middleware(CommandFastPath, gateway=ctx.gateway, table=command_table(catalog))
    app.add_middleware(MetricsMiddleware, metrics=ctx.metrics)
    # Outermost: the request's span is open while it is timed, routed and answered.
    app.add_middleware(TracingMiddleware)
    installers = _installers(ctx)
    for install in installers:
        install(app, ctx)
    _document_arguments(app, argument_schemas(list(catalog)))
    return app


def _document_arguments(app: FastAPI, components: dict[str, Any]) -> None:
    """Add the command argument schemas, which the routes reference, to the document."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            known = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in components.items():
                known.setdefault(name, definition)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _prune_forever(ctx: ApiContext) -> None:
    """Forget expired idempotency keys and old accepted ids, now and then."""
    retention = ctx.settings.command_retention_seconds
    while True:
        try:
            removed = await ctx.run(lambda: ctx.ledger.prune(accepted_retention=retention))
            if removed:
                log.info("pruned %d expired idempotency keys and accepted ids", removed)
        except Exception as exc:
            log.warning("could not prune the request ledger: %s", exc)
        await asyncio.sleep(PRUNE_EVERY)
