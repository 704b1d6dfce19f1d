"""The services one app's routes share, built once by ``create_app``.

Routes get this object through their closures (no global state, no per-request
dependency resolution): the store and the mailbox, the domain and its entity catalog, the
one command sender, the reader that caches entity state, the command gateway, the
idempotency keys and the metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from actors import CommandSender, EntityCatalog, Mailbox
from api.gateways.accepted import AcceptedLog
from api.gateways.commands import CommandGateway
from api.gateways.idempotency import IdempotencyKeys
from api.metrics import Metrics
from api.readers.entities import EntityReader
from api.settings import Settings
from eventstore import Store
from eventstore.sql.ledger import RequestLedger
from sagas import Domain

T = TypeVar("T")
Check = Callable[[], None]


@dataclass
class ApiContext:
    settings: Settings
    store: Store
    mailbox: Mailbox
    domain: Domain
    catalog: EntityCatalog
    sender: CommandSender
    executor: ThreadPoolExecutor
    metrics: Metrics
    ledger: RequestLedger
    reader: EntityReader
    accepted: AcceptedLog
    keys: IdempotencyKeys
    gateway: CommandGateway
    checks: dict[str, Check] = field(default_factory=dict)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call (a store read or write) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    @classmethod
    def build(
        cls,
        settings: Settings,
        store: Store,
        mailbox: Mailbox,
        domain: Domain,
        *,
        checks: dict[str, Check] | None = None,
        threads: int = 8,
    ) -> ApiContext:
        executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="entityflow-api")
        metrics = Metrics()
        metrics.watch_store(store)
        ledger = RequestLedger(store)
        accepted = AcceptedLog(ledger)

        async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(executor, lambda: fn(*args, **kwargs))

        keys = IdempotencyKeys(ledger, run, ttl=settings.idempotency_ttl_seconds)
        sender = CommandSender(mailbox, ack_timeout=settings.update_timeout)
        gateway = CommandGateway(
            sender,
            accepted,
            keys,
            metrics,
            default_timeout=settings.update_timeout,
            max_payload=settings.max_payload_bytes,
        )
        return cls(
            settings=settings,
            store=store,
            mailbox=mailbox,
            domain=domain,
            catalog=domain.catalog(),
            sender=sender,
            executor=executor,
            metrics=metrics,
            ledger=ledger,
            reader=EntityReader(store, executor, capacity=settings.actor_cache_size),
            accepted=accepted,
            keys=keys,
            gateway=gateway,
            checks=dict(checks or {}),
        )

    def start(self) -> None:
        self.sender.open()

    def close(self) -> None:
        self.sender.close()
        self.accepted.close()
        self.executor.shutdown(wait=True, cancel_futures=True)
