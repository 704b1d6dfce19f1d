"""entityflow's workflows: deterministic orchestration, sagas and their coordinator.

Read ``definition.py`` and ``context.py`` first (how a workflow is written), then
``engine.py`` (how its code is driven and replayed, over the one fold in ``fold.py``;
the steps it records in ``engine_steps.py``) and ``coordinator.py`` (how an execution
runs as an actor, over what its turns record and send in ``outbox.py``); ``protocol.py``
holds the messages of its life, ``client.py`` starts and inspects executions,
``domain.py`` lists what a deployment runs.
"""

from actors.retry import DEFAULT_COMPENSATION_RETRY, RetryPolicy
from sagas.activities import (
    Activity,
    ActivityCancelledError,
    ActivityInfo,
    ActivityOptions,
    ApplicationError,
    activity,
    activity_info,
    heartbeat,
)
from sagas.activity_environment import ActivityEnvironment
from sagas.activity_worker import ActivityWorker
from sagas.approvals import (
    Approval,
    ApprovalDecision,
    ApprovalResult,
    escalate,
    give_up,
    remind,
    request_approval,
)
from sagas.client import WorkflowClient
from sagas.context import CompensationScope, WorkflowContext
from sagas.coordinator import WorkflowActor, WorkflowKind
from sagas.definition import QuerySpec, Workflow
from sagas.domain import Domain, Host
from sagas.engine import Engine
from sagas.errors import (
    ActivityError,
    ChildWorkflowError,
    InvalidWorkflowInputError,
    NonDeterminismError,
    ReplayError,
    SagasError,
    StepFailed,
    StepRejected,
    UnknownWorkflowError,
    WaitTimedOut,
    WorkflowClosedError,
    WorkflowDefinitionError,
    WorkflowError,
    WorkflowNotFoundError,
    WorkflowParkedError,
    WorkflowRefusedError,
)
from sagas.fold import ExecutionRecord
from sagas.history import HISTORY_EVENTS
from sagas.outbox import CoordinatorStats
from sagas.pending import CallHandle, Pending
from sagas.protocol import Refusal
from sagas.replayer import replay
from sagas.signals import Signal
from sagas.status import (
    FINAL_STATUSES,
    ApprovalInfo,
    ChildInfo,
    CompensationInfo,
    ExecutionStatus,
    ParkInfo,
    StepInfo,
    TimerInfo,
    WorkflowView,
)

__all__ = [
    "DEFAULT_COMPENSATION_RETRY",
    "FINAL_STATUSES",
    "HISTORY_EVENTS",
    "Activity",
    "ActivityCancelledError",
    "ActivityEnvironment",
    "ActivityError",
    "ActivityInfo",
    "ActivityOptions",
    "ActivityWorker",
    "ApplicationError",
    "Approval",
    "ApprovalDecision",
    "ApprovalInfo",
    "ApprovalResult",
    "CallHandle",
    "ChildInfo",
    "ChildWorkflowError",
    "CompensationInfo",
    "CompensationScope",
    "CoordinatorStats",
    "Domain",
    "Engine",
    "ExecutionRecord",
    "ExecutionStatus",
    "Host",
    "InvalidWorkflowInputError",
    "NonDeterminismError",
    "ParkInfo",
    "Pending",
    "QuerySpec",
    "Refusal",
    "ReplayError",
    "RetryPolicy",
    "SagasError",
    "Signal",
    "StepFailed",
    "StepInfo",
    "StepRejected",
    "TimerInfo",
    "UnknownWorkflowError",
    "WaitTimedOut",
    "Workflow",
    "WorkflowActor",
    "WorkflowClient",
    "WorkflowClosedError",
    "WorkflowContext",
    "WorkflowDefinitionError",
    "WorkflowError",
    "WorkflowKind",
    "WorkflowNotFoundError",
    "WorkflowParkedError",
    "WorkflowRefusedError",
    "WorkflowView",
    "activity",
    "activity_info",
    "escalate",
    "give_up",
    "heartbeat",
    "remind",
    "replay",
    "request_approval",
]
