"""Durable timers: a message an actor sends itself later, and how the owning worker fires it.

A turn asks for a timer (:class:`TimerRequest`: a name unique within the actor, a due
time, the envelope to deliver). The runtime writes it as a row of the store's timer
index in the same commit as the turn's events, so a timer exists exactly when the turn
that set it happened. Setting a timer of the same name again moves it; cancelling
deletes the row.

The worker owning the actor's partition fires it: :class:`TimerIndex` holds in memory
only the timers of its partitions due within a horizon (a minute), read from the store
when partitions are assigned and topped up as time passes, plus those its own commits
set. A fired timer joins the worker's next batch as a co-located message, ahead of what
the batch read from the broker (:func:`timers_in_order`), and a batch read while one is
about to come due is cut short to end near it (:class:`BatchPace`). The commit that
handles it deletes the row. A worker killed before that commit leaves the row in place,
and the next owner fires it again: once in effect, never lost. Thousands of
pending timers cost a row each in the store, no thread, and memory only once they are
close.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from actors.envelopes import Envelope
from actors.mailbox.protocol import Delivery
from eventstore import Commit, Store, StoreUnavailableError, TimerRow

log = logging.getLogger("entityflow.timers")

TIMER_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_DELAY = timedelta(days=3660)
"""Ten years: a longer delay is almost always a unit mistake (milliseconds as seconds)."""
TIMER_SLACK = 0.07
"""Seconds a batch read while a timer is about to come due may be planned to run past it.

Under a backlog every batch is full, and a timer that comes due during one fires at the
start of the next: late by up to a whole batch (about 100 ms of W1 signals, more when a
batch is slow). A batch read with a timer near is sized to end about this long after it
instead. Smaller means punctual timers but more, smaller batches while timers are due
(each commit has a fixed cost, about 13 ms on PostgreSQL). Measured with ``python -m bench
timers`` (W1 signals kept 2,000 ahead, 300 timers due a second): p99 lateness 204 ms
unpaced, 150 ms at 0.07 s with W1's rate unchanged, 106 ms at 0.04 s but 10-18 % fewer
deposits a second."""


@dataclass(frozen=True, slots=True)
class TimerRequest:
    """A timer a turn sets: deliver ``envelope`` to the actor at ``due_at``."""

    name: str
    due_at: datetime
    envelope: Envelope


def check_timer_name(name: str) -> str:
    if not isinstance(name, str) or not TIMER_NAME.match(name):
        raise ValueError(
            f"timer name {name!r} must be 1 to 64 letters, digits or any of '_.:-' "
            "(setting a timer of the same name again moves it)"
        )
    return name


def due_time(now: datetime, delay: timedelta | datetime) -> datetime:
    """When a timer set ``now`` with ``delay`` (a duration, or a time of day) is due."""
    if isinstance(delay, datetime):
        if delay.tzinfo is None:
            raise ValueError(
                f"a timer's due time must carry a time zone (got {delay!r}); use "
                "datetime.now(UTC) + timedelta(...) or pass a timedelta"
            )
        delay = delay - now
        delay = max(delay, timedelta(0))  # a time already past fires at once
    if not isinstance(delay, timedelta):
        raise TypeError(
            f"a timer's delay is a datetime.timedelta (or an aware datetime), got "
            f"{type(delay).__name__} {delay!r}"
        )
    if delay < timedelta(0):
        raise ValueError(f"a timer's delay cannot be negative (got {delay})")
    if delay > MAX_DELAY:
        raise ValueError(
            f"a timer's delay of {delay} is longer than {MAX_DELAY.days} days; check its unit"
        )
    return now + delay


def timer_id(address: str, name: str) -> str:
    return f"{address}~{name}"


def timer_row(address: str, partition: int, request: TimerRequest) -> TimerRow:
    """The row of the timer index for a request: its envelope carries the timer's id and a
    command id of its own (one per due time, so a moved timer is a new command)."""
    tid = timer_id(address, request.name)
    digest = hashlib.sha256(f"{tid}@{request.due_at.isoformat()}".encode()).hexdigest()[:32]
    envelope = request.envelope.model_copy(
        update={"command_id": f"timer:{request.name}:{digest}", "timer": tid}
    )
    return TimerRow(tid, address, partition, request.due_at, envelope.encode().decode())


def timers_in_order(read: list[Delivery], timers: list[Delivery]) -> list[Delivery]:
    """A batch's order: due timers before what was read from the broker, so a backlog in
    the batch does not hold them back, except a timer of an actor the batch has a message
    for, which comes after it (a signal read just before its timeout wins, a cancel read
    with the firing cancels it). Actors are independent within a batch; only an actor's
    own order matters."""
    addresses = {d.envelope.address for d in read if d.envelope is not None}
    first = [t for t in timers if t.envelope is None or t.envelope.address not in addresses]
    last = [t for t in timers if t.envelope is not None and t.envelope.address in addresses]
    return first + read + last


class BatchPace:
    """How long this worker's batches take per message (a moving average), to size a batch
    so that it ends near the next timer's due time rather than a full batch after it."""

    def __init__(self, slack: float = TIMER_SLACK) -> None:
        self.slack = slack
        self._per_message = 0.0

    def took(self, seconds: float, messages: int) -> None:
        if messages > 0:
            per = seconds / messages
            old = self._per_message
            self._per_message = 0.8 * old + 0.2 * per if old else per

    def room(self, room: int, due_in: float | None) -> int:
        """Of ``room`` messages, how many a batch may read when the next timer is due in
        ``due_in`` seconds (None: none pending); at least one, so work always moves."""
        if due_in is None or not self._per_message:
            return room
        return max(1, min(room, int((due_in + self.slack) / self._per_message)))


class TimerIndex:
    """The timers one worker fires: those of its partitions due within ``horizon``."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], datetime],
        *,
        horizon: timedelta = timedelta(seconds=60),
        page: int = 10_000,
    ) -> None:
        self.store = store
        self.clock = clock
        self.horizon = horizon
        self.page = page
        self._owned: set[int] = set()
        self._heap: list[tuple[datetime, str]] = []
        self._current: dict[str, TimerRow] = {}
        self._loaded_until: datetime | None = None
        self._cursor: tuple[datetime, str] | None = None
        """Where the next page starts when the last read filled a page."""

    def __len__(self) -> int:
        return len(self._current)

    # -- ownership ---------------------------------------------------------------------

    def assigned(self, partitions: Iterable[int]) -> None:
        """New partitions: read everything again at the next :meth:`refresh` (rare)."""
        self._owned.update(partitions)
        self.reset()

    def revoked(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        self._owned -= gone
        for tid in [t for t, row in self._current.items() if row.partition in gone]:
            del self._current[tid]

    def reset(self) -> None:
        """Forget what is in memory (a batch did not commit); the store has the truth."""
        self._heap.clear()
        self._current.clear()
        self._loaded_until = None
        self._cursor = None

    # -- keeping up ----------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the timers that have come within the horizon since the last read, a page
        at a time, in (due time, id) order (so any number due at one instant all load)."""
        now = self.clock()
        until = self._loaded_until
        if until is not None and self._cursor is None and until - now > self.horizon / 2:
            return
        target = now + self.horizon
        after = self._cursor if self._cursor is not None else until
        try:
            rows = self.store.due_timers(
                sorted(self._owned), after=after, until=target, limit=self.page
            )
        except StoreUnavailableError:
            log.warning("store unavailable while reading due timers; will retry")
            return
        for row in rows:
            self._hold(row)
        if len(rows) == self.page:
            # A full page: what is loaded ends at its last row; the next read goes on.
            last = rows[-1]
            self._cursor, self._loaded_until = (last.due_at, last.timer_id), last.due_at
        else:
            self._cursor, self._loaded_until = None, target

    def committed(self, commit: Commit) -> None:
        """Take in what a commit of this worker set and cleared."""
        for tid in commit.timers_cleared:
            self._current.pop(tid, None)
        for row in commit.timers:
            self._current.pop(row.timer_id, None)
            if row.partition in self._owned and self._within(row.due_at):
                self._hold(row)

    def _within(self, due: datetime) -> bool:
        return self._loaded_until is not None and due <= self._loaded_until

    def _hold(self, row: TimerRow) -> None:
        self._current[row.timer_id] = row
        heapq.heappush(self._heap, (row.due_at, row.timer_id))

    # -- firing --------------------------------------------------------------------------

    def next_due(self) -> datetime | None:
        heap, current = self._heap, self._current
        while heap:
            due, tid = heap[0]
            row = current.get(tid)
            if row is not None and row.due_at == due:
                return due
            heapq.heappop(heap)  # moved or cleared since
        return None

    def take_due(self, limit: int, ready: Callable[[int], bool]) -> list[TimerRow]:
        """Up to ``limit`` timers due now whose partition is ``ready``, soonest first.

        A taken timer stays known until the commit that handles it clears it (or until
        :meth:`reset` after a failed batch, when the store is read again).
        """
        now = self.clock()
        taken: list[TimerRow] = []
        waiting: list[tuple[datetime, str]] = []
        while len(taken) < limit:
            due = self.next_due()
            if due is None or due > now:
                break
            _, tid = heapq.heappop(self._heap)
            row = self._current[tid]
            if ready(row.partition):
                taken.append(row)
            else:
                waiting.append((due, tid))
        for item in waiting:
            heapq.heappush(self._heap, item)
        return taken

    def counts(self) -> tuple[int, int]:
        """(timers known, of those the ones due now): a walk, for the metrics tick."""
        now = self.clock()
        return len(self._current), sum(1 for row in self._current.values() if row.due_at <= now)

    def seconds_to_next(self) -> float | None:
        due = self.next_due()
        if due is None:
            return None
        return max(0.0, (due - self.clock()).total_seconds())
