"""The saga timeline's shape: what ``GET /workflows/{type}/{id}/timeline`` returns.

Kept apart from the walk that fills it in (``timeline.py``), so that a reader of the
API's contract (the console, an OpenAPI client) finds the models without the fold of
every history event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sagas.status import CompensationInfo, ExecutionState

__all__ = ["EntryKind", "Timeline", "TimelineAttempt", "TimelineEntry"]

EntryKind = Literal[
    "workflow",
    "step",
    "activity",
    "local_activity",
    "child",
    "compensation",
    "timer",
    "signal",
    "approval",
    "patch",
]
"""``workflow`` entries are the execution's own moments (started, compensating, ended,
parked, cancel requested); ``step`` is a call to an entity."""


class TimelineAttempt(BaseModel):
    """One attempt of a call, an activity or a local activity."""

    model_config = ConfigDict(extra="forbid")

    attempt: int
    scheduled_at: datetime
    started_at: datetime = Field(description="when it was sent (after any retry wait)")
    ended_at: datetime | None = Field(description="when its answer was recorded (None: open)")
    duration_seconds: float | None
    status: str = Field(description="pending, or the verdict: applied, rejected, ...")
    error: str | None = None
    code: str | None = Field(default=None, description="why it failed, as a value")
    heartbeats: int = 0


class TimelineEntry(BaseModel):
    """One thing the execution did or waited for, on the time axis."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="stable within the history, e.g. `step-3`, `signal-v9`")
    kind: EntryKind
    name: str = Field(description="what it is, e.g. `Account/acct-7.withdraw`")
    seq: int | None = Field(default=None, description="the step number in the history")
    start: datetime
    end: datetime | None = Field(description="None while it is open")
    duration_seconds: float | None
    status: str
    attempts: list[TimelineAttempt] = []
    error: str | None = None
    compensation: int | None = Field(
        default=None, description="the index of the compensation this entry runs"
    )
    guards: list[int] = Field(default=[], description="compensations that would undo it")
    detail: dict[str, Any] = Field(
        default={}, description="arguments, payload, result, due time: what else is known"
    )
    first_version: int
    last_version: int


class Timeline(BaseModel):
    """``GET /workflows/{type}/{id}/timeline``: the execution on a time axis."""

    model_config = ConfigDict(extra="forbid")

    workflow_type: str
    workflow_id: str
    status: ExecutionState
    started_at: datetime | None
    ended_at: datetime | None = Field(description="when it completed, compensated or failed")
    updated_at: datetime | None
    version: int
    run: int = Field(1, description="the run shown: the current one (the status lists all)")
    result: Any = None
    error: str | None = None
    failed_compensation: str | None = None
    cancelled: bool = False
    entries: list[TimelineEntry]
    compensations: list[CompensationInfo]
    compensations_pending: list[str] = Field(description="newest first, as they would run")
    waiting_on: list[str] = Field(description="the open entries, by name: what it waits for now")
    memo: dict[str, Any] | None = Field(
        default=None,
        description="the values the code keeps for its queries (`ctx.memo`), rebuilt by a "
        "replay; None when the code no longer replays the history",
    )
