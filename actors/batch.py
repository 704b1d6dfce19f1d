"""A processed batch: everything one worker transaction commits, and what goes out after it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors.envelopes import ACTOR_ROUTE, Envelope, reply_envelope
from actors.mailbox.protocol import Delivery
from eventstore import Commit, LoadedStream, Outcome, Snapshot, TimerRow

__all__ = ["BatchResult"]


@dataclass
class BatchResult:
    """A processed batch, waiting for its commit."""

    commit: Commit
    last_offsets: dict[int, int] = field(default_factory=dict)
    replies: list[tuple[str, Outcome[Any], str | None]] = field(default_factory=list)
    """(reply route, outcome, correlation) of every command that asked for an answer."""
    outbox: list[Envelope] = field(default_factory=list)
    dead_letters: list[tuple[Delivery, str]] = field(default_factory=list)
    touched: dict[str, int] = field(default_factory=dict)
    prefetched: dict[str, LoadedStream] = field(default_factory=dict)
    timer_changes: dict[str, TimerRow | None] = field(default_factory=dict)
    """Timers set (a row) or cleared (None) by this batch, the last change per id."""
    snapshots: list[Snapshot] = field(default_factory=list)
    """Snapshots the actors asked for (``Turn.snapshot``), saved after the commit."""
    followed: list[Delivery] = field(default_factory=list)
    """Messages this batch sent and handled itself (``process``'s ``follow``)."""

    def settle_timers(self) -> None:
        """Write the batch's last change of each timer into its commit."""
        for tid, row in self.timer_changes.items():
            if row is None:
                self.commit.timers_cleared.append(tid)
            else:
                self.commit.timers.append(row)

    def take_messages(self, wanted: Callable[[Envelope], bool]) -> list[Envelope]:
        """Remove and return the outgoing envelopes ``wanted`` picks, in the order sent;
        the rest stay to be sent after the commit."""
        taken: list[Envelope] = []
        outbox: list[Envelope] = []
        for envelope in self.outbox:
            (taken if wanted(envelope) else outbox).append(envelope)
        self.outbox = outbox
        replies: list[tuple[str, Outcome[Any], str | None]] = []
        for route, outcome, correlation in self.replies:
            if route.startswith(ACTOR_ROUTE):
                envelope = reply_envelope(route[len(ACTOR_ROUTE) :], outcome, correlation)
                if wanted(envelope):
                    taken.append(envelope)
                    continue
            replies.append((route, outcome, correlation))
        self.replies = replies
        return taken

    def messages_after_commit(self) -> list[Envelope]:
        """Outgoing envelopes: the outbox plus replies routed to other actors."""
        routed = [
            reply_envelope(route[len(ACTOR_ROUTE) :], outcome, correlation)
            for route, outcome, correlation in self.replies
            if route.startswith(ACTOR_ROUTE)
        ]
        return [*self.outbox, *routed]

    def channel_replies(self) -> list[tuple[str, Outcome[Any]]]:
        return [(r, o) for r, o, _ in self.replies if not r.startswith(ACTOR_ROUTE)]
