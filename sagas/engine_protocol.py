"""What the engine's helpers (local activities) may use of it, so they never import it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol


class EngineCore(Protocol):
    address: str
    replaying: bool
    run: int

    def now(self) -> datetime: ...

    def emit(self, decision: Any) -> None: ...

    def timer(self, delay: timedelta | datetime, label: str) -> Any: ...
