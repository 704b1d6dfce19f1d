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
from sagas.activities import Activity
from sagas.activity_worker import ActivityWorker
from sagas.client import WorkflowClient
from sagas.coordinator import WorkflowKind
from sagas.definition import AnyWorkflow
from sagas.errors import WorkflowDefinitionError
from sagas.history import HISTORY_EVENTS
from sagas.metrics import WorkflowMetrics


@dataclass(frozen=True)
class Domain:
    """What a deployment runs. ``Domain(ENTITIES, WORKFLOWS)``."""

    entities: Sequence[type[Entity[Any]]]
    workflows: Sequence[AnyWorkflow] = ()
    activities: Sequence[Activity[Any, Any]] = ()
    resend_after: float = 30.0
    """Seconds a workflow waits for a call's reply before it sends the call again."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "entities", tuple(self.entities))
        object.__setattr__(self, "workflows", tuple(self.workflows))
        object.__setattr__(self, "activities", tuple(self.activities))
        names = [wf.name for wf in self.workflows]
        if len(set(names)) != len(names):
            raise ValueError(f"two workflows share a name: {sorted(names)}")
        for wf in self.workflows:
            wf.check()
        EntityCatalog(self.entities)  # two classes under one type name fail here
        self._check_activities()

    def _check_activities(self) -> None:
        """Every activity a workflow's code names must be listed: found when the domain
        is built, not when an execution first reaches the call."""
        listed: dict[str, Activity[Any, Any]] = {}
        for act in self.activities:
            if not isinstance(act, Activity):
                raise WorkflowDefinitionError(
                    f"{act!r} is not an activity: declare it with @activity"
                )
            if listed.setdefault(act.name, act).fn is not act.fn:
                raise WorkflowDefinitionError(f"two activities are named {act.name!r}")
        for wf in self.workflows:
            for act in referenced_activities(wf.run_fn):
                if act.name not in listed:
                    raise WorkflowDefinitionError(
                        f"workflow {wf.name} runs activity {act.name!r}, which the domain "
                        f"does not list: Domain(..., activities=[..., {act.fn.__name__}])"
                    )

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
        concurrency = options.pop("activity_concurrency", 16)
        run_activities = options.pop("run_activities", True)
        super().__init__(store, domain.entities, kinds=domain.kinds(), mailbox=mailbox, **options)
        self.domain = domain
        self.workflow_metrics = WorkflowMetrics(self.metrics.registry)
        self.metrics.observe(self.workflow_metrics)
        self.activities: ActivityWorker | None = None
        if domain.activities and run_activities:
            self.activities = ActivityWorker(
                self.mailbox,
                domain.activities,
                group=f"{options.get('group', 'entityflow-workers')}.activities",
                concurrency=concurrency,
                store=self.store,
            )
            self.workflow_metrics.watch_activities(self.activities)
        self.workflows = WorkflowClient(
            self.mailbox,
            self.store,
            domain.workflows,
            timeout=self.client.default_timeout,
            sender=self.client.sender,
        )

    def start(self) -> Host:
        super().start()
        if self.activities is not None:
            self.activities.start()
        return self

    def stop(self) -> None:
        if self.activities is not None:
            self.activities.stop()  # first: it polls the mailbox the host closes
        super().stop()


def referenced_activities(fn: Any) -> list[Activity[Any, Any]]:
    """The activities a function's code names as globals (nested functions included)."""
    found: dict[int, Activity[Any, Any]] = {}
    code_objects = [getattr(fn, "__code__", None)]
    names: set[str] = set()
    while code_objects:
        code = code_objects.pop()
        if code is None:
            continue
        names.update(code.co_names)
        code_objects += [c for c in code.co_consts if hasattr(c, "co_names")]
    scope = getattr(fn, "__globals__", {})
    for name in names:
        value = scope.get(name)
        if isinstance(value, Activity):
            found[id(value)] = value
    return list(found.values())
