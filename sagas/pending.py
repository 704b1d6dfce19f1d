"""The awaitables of workflow code: a :class:`Pending` value and a scheduled call.

Workflow code awaits only these. The engine drives the coroutine itself, without an
event loop: awaiting a Pending that is not done yields it to the engine, which resolves
or fails it when the input it waits for comes (a reply, a signal, a timer). Kept apart
from the context so the engine, its steps and the context share them without importing
each other.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Decoder = Callable[[Any], Any]


class Pending(Generic[T]):
    """A value a workflow waits for. Await it; never create one yourself."""

    __slots__ = ("_abandoned", "_callbacks", "_done", "_error", "_on_abandon", "_value", "what")

    def __init__(self, what: str) -> None:
        self.what = what
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Pending[Any]], None]] = []
        self._on_abandon: list[Callable[[], None]] = []
        self._abandoned = False

    @property
    def done(self) -> bool:
        return self._done

    @property
    def failed(self) -> bool:
        return self._error is not None

    def resolve(self, value: Any) -> None:
        self._settle(value, None)

    def fail(self, error: BaseException) -> None:
        self._settle(None, error)

    def _settle(self, value: Any, error: BaseException | None) -> None:
        if self._done:
            return
        self._done, self._value, self._error = True, value, error
        callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            cb(self)

    def on_done(self, cb: Callable[[Pending[Any]], None]) -> None:
        if self._done:
            cb(self)
        else:
            self._callbacks.append(cb)

    def on_abandon(self, cb: Callable[[], None]) -> None:
        """Run ``cb`` if the code stops waiting for this before it is done (a lost race)."""
        self._on_abandon.append(cb)

    def abandon(self) -> None:
        """Nobody waits for this any more: a timer is cancelled, a signal wait withdrawn
        (the signal is kept for the next wait). A call already sent still runs."""
        if self._done or self._abandoned:
            return
        self._abandoned = True
        callbacks, self._on_abandon = self._on_abandon, []
        for cb in callbacks:
            cb()

    def outcome(self) -> T:
        if self._error is not None:
            raise self._error
        value: T = self._value
        return value

    def __await__(self) -> Generator[Pending[Any], None, T]:
        while not self._done:
            yield self
        return self.outcome()

    def __repr__(self) -> str:
        state = "failed" if self.failed else "done" if self._done else "pending"
        return f"<{self.what}: {state}>"


class CallHandle(Pending[T]):
    """A call that has been scheduled: await it for the entity's result."""

    __slots__ = ("address", "command", "seq")

    def __init__(self, seq: int, address: str, command: str) -> None:
        super().__init__(f"call #{seq} {address}.{command}")
        self.seq = seq
        self.address = address
        self.command = command
