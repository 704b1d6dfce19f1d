"""What a worker counts about itself: printed when it stops, read by tests and benchmarks.

Plain counters on the worker's own thread (no locks); the Prometheus metrics are in
:mod:`actors.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["WorkerStats"]


@dataclass
class WorkerStats:
    """Counters, and seconds spent per phase of the loop (where a batch cycle goes)."""

    batches: int = 0
    messages: int = 0
    local_messages: int = 0
    followed: int = 0
    """Of the co-located ones, those handled in the batch that sent them."""
    conflicts: int = 0
    store_failures: int = 0
    dead_letters: int = 0
    log_resets: int = 0
    timers_fired: int = 0
    poll_seconds: float = 0.0
    process_seconds: float = 0.0
    commit_seconds: float = 0.0
    send_seconds: float = 0.0

    def summary(self) -> str:
        per = max(self.batches, 1)
        return (
            f"{self.messages} messages ({self.local_messages} co-located, {self.followed} "
            f"in the batch that sent them) in "
            f"{self.batches} batches ({self.messages / per:.1f} per batch); ms per batch: "
            f"poll {self.poll_seconds / per * 1000:.1f}, "
            f"process {self.process_seconds / per * 1000:.1f}, "
            f"commit {self.commit_seconds / per * 1000:.1f}, "
            f"send {self.send_seconds / per * 1000:.1f}; "
            f"{self.conflicts} lost races, {self.store_failures} store failures, "
            f"{self.dead_letters} dead letters"
        )
