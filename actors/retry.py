"""How often, and how far apart, a step or compensation is tried again.

One frozen object groups the options so the same policy can be shared by many calls and
recorded in a workflow's history (a retry already scheduled keeps the policy it was
scheduled under).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RetryPolicy(BaseModel):
    """``attempts`` in all (the first included), waiting ``initial_interval`` seconds before
    the second, multiplied by ``backoff`` each time, never more than ``max_interval``.

    ``non_retryable`` names error types (an activity's exception class name, or an
    ``ApplicationError``'s ``type``) that end the retries at once. An entity's refusal
    (``Rejected``) of a workflow's call is its answer, not a failure: it is not tried
    again unless ``retry_rejected`` (a compensation's refusal always is: it must finish)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempts: int = Field(default=10, ge=1, le=10_000)
    initial_interval: float = Field(default=1.0, ge=0.0, le=86_400.0)
    backoff: float = Field(default=2.0, ge=1.0, le=100.0)
    max_interval: float = Field(default=60.0, ge=0.0, le=86_400.0)
    non_retryable: tuple[str, ...] = ()
    retry_rejected: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max_interval < self.initial_interval:
            raise ValueError("max_interval must be >= initial_interval")
        return self

    def delay(self, attempt: int) -> timedelta:
        """The wait before ``attempt`` (2 is the first retry)."""
        if attempt < 2:
            return timedelta(0)
        seconds = self.initial_interval * self.backoff ** (attempt - 2)
        return timedelta(seconds=min(seconds, self.max_interval))

    def allows(self, attempt: int) -> bool:
        """Whether ``attempt`` (1-based) is within the budget."""
        return attempt <= self.attempts


DEFAULT_COMPENSATION_RETRY = RetryPolicy()
"""Compensations must finish: ten attempts over about four minutes unless told otherwise."""
