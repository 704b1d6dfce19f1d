"""The seam between the workflow context and the engine: what the context may ask of it.

:class:`~sagas.WorkflowContext` calls the engine only through :class:`EngineView`, so the
context never imports the engine (the engine imports the context to hand it to the code).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NoReturn, Protocol

from actors import RetryPolicy
from eventstore import JSONDict
from sagas.activities import Activity, ActivityOptions
from sagas.pending import CallHandle, Decoder, Pending


class EngineView(Protocol):
    """The part of the engine the context uses (so the context never imports it)."""

    workflow_type: str
    workflow_id: str
    address: str
    memo: dict[str, Any]
    replaying: bool

    def now(self) -> datetime: ...

    def random_bits(self, bits: int) -> int: ...

    def schedule_call(
        self,
        address: str,
        command: str,
        args: JSONDict,
        retry: RetryPolicy | None,
        decode: Decoder,
    ) -> CallHandle[Any]: ...

    def schedule_activity(
        self,
        name: str,
        args: JSONDict,
        retry: RetryPolicy,
        options: ActivityOptions,
        decode: Decoder,
    ) -> CallHandle[Any]: ...

    def register_compensation(
        self, address: str, command: str, args: JSONDict, retry: RetryPolicy, guarded: bool
    ) -> int: ...

    def open_guard(self, index: int) -> None: ...

    def close_guard(self, index: int) -> None: ...

    def wait_signal(self, name: str) -> Pending[Any]: ...

    def start_timer(self, delay: timedelta | datetime, label: str) -> Pending[None]: ...

    def guard_signal(self, name: str, guard: Callable[[Any], str | None] | None) -> None: ...

    def record_decision(self, decision: Any) -> None: ...

    def patched(self, change_id: str) -> bool: ...

    def run_local(self, act: Activity[Any, Any], body: JSONDict) -> CallHandle[Any]: ...

    def schedule_child(
        self, address: str, input_json: Any, parent_close: Any, decode: Decoder
    ) -> CallHandle[Any]: ...

    def next_seq(self) -> int: ...

    def wait_condition(self, predicate: Callable[[], bool], what: str) -> Pending[None]: ...

    def continue_as_new(self, input_json: Any) -> Pending[NoReturn]: ...
