"""entityflow's workflows: deterministic orchestration, sagas and their coordinator.

Read ``definition.py`` and ``context.py`` first (how a workflow is written), then
``engine.py`` (how its code is driven and replayed) and ``coordinator.py`` (how an
execution runs as an actor); ``client.py`` starts and inspects executions.
"""

from sagas.client import WorkflowClient
from sagas.context import CallHandle, CompensationScope, Pending, WorkflowContext
from sagas.coordinator import CoordinatorStats, WorkflowActor, WorkflowKind
from sagas.definition import QuerySpec, Workflow
from sagas.engine import Engine, replay
from sagas.errors import (
    InvalidWorkflowInputError,
    NonDeterminismError,
    ReplayError,
    SagasError,
    StepFailed,
    StepRejected,
    UnknownWorkflowError,
    WorkflowDefinitionError,
    WorkflowError,
    WorkflowNotFoundError,
    WorkflowParkedError,
)
from sagas.history import HISTORY_EVENTS
from sagas.record import (
    FINAL_STATUSES,
    CompensationInfo,
    ExecutionRecord,
    ExecutionStatus,
    ParkInfo,
    StepInfo,
    WorkflowView,
)
from sagas.retry import DEFAULT_COMPENSATION_RETRY, RetryPolicy

__all__ = [
    "DEFAULT_COMPENSATION_RETRY",
    "FINAL_STATUSES",
    "HISTORY_EVENTS",
    "CallHandle",
    "CompensationInfo",
    "CompensationScope",
    "CoordinatorStats",
    "Engine",
    "ExecutionRecord",
    "ExecutionStatus",
    "InvalidWorkflowInputError",
    "NonDeterminismError",
    "ParkInfo",
    "Pending",
    "QuerySpec",
    "ReplayError",
    "RetryPolicy",
    "SagasError",
    "StepFailed",
    "StepInfo",
    "StepRejected",
    "UnknownWorkflowError",
    "Workflow",
    "WorkflowActor",
    "WorkflowClient",
    "WorkflowContext",
    "WorkflowDefinitionError",
    "WorkflowError",
    "WorkflowKind",
    "WorkflowNotFoundError",
    "WorkflowParkedError",
    "WorkflowView",
    "replay",
]
