"""Following the store's notification log: every committed event, in commit order.

The log is read through an `eventsourcing` subscription. On PostgreSQL that is the
recorder's own ``PostgresSubscription`` (woken by ``LISTEN``/``NOTIFY`` on each commit).
SQLite has no notifications, so :class:`SQLiteSubscription` is the same ``ListenNotify``
machinery woken by a short timer instead: each wake-up selects only the rows after the
last id it saw (an indexed ``rowid`` range), never the whole table.

Both add :meth:`take`: wait for the first notification, then take what is already
fetched without waiting (what a relay needs to batch its sends). :class:`LogFollower`
opens the right one for a store and hands out entityflow's own :class:`LogEntry`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import ListenNotifySubscription, Notification, ShutDown
from eventsourcing.postgres import PostgresSubscription

from eventstore.errors import StoreUnavailableError
from eventstore.records import LogEntry
from eventstore.sql.store import Store, log_entry

log = logging.getLogger("entityflow.stream")


class _Batches(ListenNotifySubscription[Any]):
    """``take(limit, timeout)`` on a ``ListenNotifySubscription``.

    The subscription's pull thread queues lists of notifications; iteration hands them out
    one at a time, and this hands them out in batches, from the same state.
    """

    def take(self, limit: int, timeout: float) -> list[Notification]:
        batch: list[Notification] = []
        while len(batch) < limit:
            index, fetched = self._notifications_index, self._notifications
            if index < len(fetched):
                chunk = fetched[index : index + limit - len(batch)]
                batch.extend(chunk)
                self._notifications_index = index + len(chunk)
                continue
            if self._has_been_stopped:
                break
            try:
                if batch:
                    nxt: Sequence[Notification] = self._notifications_queue.get_nowait()
                else:
                    nxt = self._notifications_queue.get(timeout=timeout)
            except (queue.Empty, ShutDown):
                break
            self._notifications_queue.task_done()
            self._notifications, self._notifications_index = nxt, 0
        if not batch and self._thread_error is not None:
            raise StoreUnavailableError(
                f"following the notification log failed: {self._thread_error!r}"
            ) from self._thread_error
        return batch


class SQLiteSubscription(_Batches):
    """A ``ListenNotifySubscription`` for SQLite, woken every ``interval`` seconds."""

    def __init__(self, recorder: Any, gt: int | None = None, *, interval: float = 0.01) -> None:
        self._interval = interval
        super().__init__(recorder=recorder, gt=gt)
        self._waker = threading.Thread(target=self._wake, name="entityflow-sqlite-log", daemon=True)
        self._waker.start()

    def _wake(self) -> None:
        while not self._has_been_stopped:
            time.sleep(self._interval)
            self._has_been_notified.set()

    def __exit__(self, *args: object, **kwargs: Any) -> None:
        try:
            super().__exit__(*args, **kwargs)
        finally:
            self._waker.join()


class PostgresLogSubscription(_Batches, PostgresSubscription):
    """The recorder's ``LISTEN``/``NOTIFY`` subscription, with :meth:`take`."""


def subscribe(store: Store, after: int = 0, *, interval: float = 0.01) -> _Batches:
    """An `eventsourcing` subscription to the store's log, after notification id ``after``."""
    recorder: Any = store._recorder
    if store.kind == "postgresql":
        return PostgresLogSubscription(recorder=recorder, gt=after)
    return SQLiteSubscription(recorder, gt=after, interval=interval)


class LogFollower:
    """Batches of notifications after a position; a context manager.

    :meth:`take` raises :class:`StoreUnavailableError` when the subscription failed (the
    caller starts a new follower from its tracked position).
    """

    def __init__(self, store: Store, after: int = 0, *, interval: float = 0.01) -> None:
        self.after = after
        self._subscription = subscribe(store, after, interval=interval)
        self._subscription.__enter__()

    def take(self, limit: int, timeout: float) -> list[LogEntry]:
        """Wait up to ``timeout`` for one notification, then take what is there (<= limit)."""
        return [log_entry(n) for n in self._subscription.take(limit, timeout)]

    def close(self) -> None:
        try:
            self._subscription.__exit__(None, None, None)
        except Exception as exc:  # the threads are gone either way; say why they ended
            log.warning("closing the notification log subscription: %s", exc)

    def __enter__(self) -> LogFollower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
