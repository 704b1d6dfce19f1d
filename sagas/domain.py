"""A domain: the entities, workflows (and activities) a deployment runs, listed once.

Everything that runs or serves them takes the same :class:`Domain`: an in-process
:class:`Host` (``domain.host(store)``), ``entityflow worker`` and ``serve`` (``--domain``
names the module that exports it), and the API. It derives what each needs: the actor
kinds a worker runs, the event registry the store decodes with, the entity catalog.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import actors
from actors import ActorKind, Entity, EntityCatalog, EntitySpec, Mailbox
from eventstore import EventRegistry, Store
from sagas.client import WorkflowClient
from sagas.coordinator import WorkflowKind
from sagas.definition import AnyWorkflow
from sagas.history import HISTORY_EVENTS


@dataclass(frozen=True)
class Domain:
    """What a deployment runs. ``Domain(ENTITIES, WORKFLOWS)``."""

    entities: Sequence[type[Entity[Any]]]
    workflows: Sequence[AnyWorkflow] = ()
    resend_after: float = 30.0
    """Seconds a workflow waits for a call's reply before it sends the call again."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "entities", tuple(self.entities))
        object.__setattr__(self, "workflows", tuple(self.workflows))
        names = [wf.name for wf in self.workflows]
        if len(set(names)) != len(names):
            raise ValueError(f"two workflows share a name: {sorted(names)}")
        for wf in self.workflows:
            wf.check()
        EntityCatalog(self.entities)  # two classes under one type name fail here

    def catalog(self) -> EntityCatalog:
        return EntityCatalog(self.entities)

    def kinds(self) -> list[ActorKind]:
        """The actor kinds a worker runs for the workflows (entities are added by Host)."""
        return [WorkflowKind(wf, resend_after=self.resend_after) for wf in self.workflows]

    def registry(self) -> EventRegistry:
        """Every event class of every entity and of workflow histories, in one registry."""
        registry = EventRegistry(HISTORY_EVENTS if self.workflows else ())
        for cls in self.entities:
            registry.merge(EntitySpec.of(cls).registry)
        return registry

    def host(self, store: Store | str, *, mailbox: Mailbox | None = None, **options: Any) -> Host:
        """An in-process node running this domain (start it, or use it as a context)."""
        return Host(self, store, mailbox=mailbox, **options)


class Host(actors.Host):
    """An in-process node of a domain: a worker thread, ``client`` for entities and
    ``workflows`` for workflow executions, over one store and one mailbox."""

    def __init__(
        self,
        domain: Domain,
        store: Store | str,
        *,
        mailbox: Mailbox | None = None,
        **options: Any,
    ) -> None:
        super().__init__(store, domain.entities, kinds=domain.kinds(), mailbox=mailbox, **options)
        self.domain = domain
        self.workflows = WorkflowClient(
            self.mailbox,
            self.store,
            domain.workflows,
            timeout=self.client.default_timeout,
            sender=self.client.sender,
        )
