"""The public API of each package is what its ``__all__`` says, and changes only on purpose.

A name added or removed here is an API change: say so in the commit. Also: every technology
has one home (ruff's banned-api, probed), and the HTTP client works without FastAPI.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PUBLIC = {
    "eventstore": [
        "Commit",
        "ConcurrencyConflictError",
        "DomainEvent",
        "EventDecodeError",
        "EventRecord",
        "EventRegistry",
        "EventStoreError",
        "ExecutionRow",
        "FencedTracking",
        "JSONDict",
        "LoadedStream",
        "LogEntry",
        "Outcome",
        "OutcomeStatus",
        "RecordedEvent",
        "RegistryError",
        "Snapshot",
        "Store",
        "StoreConfigError",
        "StoreUnavailableError",
        "StreamNotFoundError",
        "TimerRow",
        "UnknownEventTypeError",
        "Upcaster",
        "details",
        "explain",
        "upcaster",
        "utcnow",
    ],
    "actors": [
        "ACTIVITY_ROUTE",
        "Actor",
        "ActorKind",
        "ActorsError",
        "Address",
        "AlreadyRedrivenError",
        "BatchResult",
        "CallOptions",
        "Client",
        "Command",
        "CommandContext",
        "CommandFailedError",
        "CommandRejectedError",
        "CommandSender",
        "CommandSpec",
        "DeadLetterPage",
        "DeadLetterRecord",
        "DefinitionError",
        "Delivery",
        "Entity",
        "EntityActor",
        "EntityCatalog",
        "EntityKind",
        "EntityNotFoundError",
        "EntitySpec",
        "Envelope",
        "Handler",
        "HandlerCrashedError",
        "Host",
        "InMemoryMailbox",
        "InvalidAddressError",
        "InvalidArgumentsError",
        "Mailbox",
        "MailboxConsumer",
        "MailboxUnavailableError",
        "NotRedrivableError",
        "PartitionListener",
        "PayloadTooLargeError",
        "Query",
        "QueryResult",
        "Rejected",
        "ReplyChannel",
        "ReplyOverdueError",
        "RetryPolicy",
        "Runtime",
        "SendUnconfirmedError",
        "StateView",
        "TaskConsumer",
        "TimerIndex",
        "TimerRequest",
        "Turn",
        "UnknownCommandError",
        "UnknownDeadLetterError",
        "UnknownEntityTypeError",
        "UpdateTimeoutError",
        "Worker",
        "apply",
        "check_entity_id",
        "command",
        "decoded",
        "is_activity_task",
        "load_entity",
        "merge_registries",
        "new_command_id",
        "query",
        "system_clock",
    ],
    "sagas": [
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
        "DEFAULT_COMPENSATION_RETRY",
        "Domain",
        "Engine",
        "ExecutionRecord",
        "ExecutionStatus",
        "FINAL_STATUSES",
        "HISTORY_EVENTS",
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
    ],
    "api": [
        "EntityflowClient",
        "Settings",
    ],
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_all_is_pinned_and_every_name_exists(package: str) -> None:
    module = importlib.import_module(package)
    assert sorted(module.__all__) == PUBLIC[package]
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names what it does not define: {missing}"


def test_the_http_client_imports_without_fastapi() -> None:
    """Other services install httpx and pydantic, not the server's stack."""
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'fastapi', 'starlette', 'uvicorn', 'kafka'}:\n"
        "            raise ImportError(f'{name} is not installed here')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from api.client import EntityflowClient\n"
        "print(EntityflowClient.__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", blocker], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "EntityflowClient"


HOMES = {
    "kafka": "eventstore/kafka",
    "eventsourcing": "eventstore/sql",
    "psycopg": "eventstore/sql",
    "psycopg_pool": "eventstore/sql",
    "fastapi": "api",
    "uvicorn": "api",
}
PLACES = [
    "eventstore",
    "eventstore/sql",
    "eventstore/kafka",
    "eventstore/stream",
    "actors",
    "actors/mailbox",
    "sagas",
    "api",
]


def _banned(place: str, module: str) -> bool:
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ruff"),
            "check",
            "--select",
            "TID251",
            "--output-format",
            "concise",
            "--stdin-filename",
            f"{place}/probe.py",
            "-",
        ],
        cwd=ROOT,
        input=f"import {module}\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    return "TID251" in done.stdout


@pytest.mark.parametrize("module", sorted(HOMES))
def test_each_technology_is_imported_only_in_its_home(module: str) -> None:
    home = HOMES[module]
    allowed = [place for place in PLACES if not _banned(place, module)]
    assert allowed == [p for p in PLACES if p == home or p.startswith(home + "/")]
