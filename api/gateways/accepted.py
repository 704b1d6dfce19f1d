"""Group-commits the ids of accepted commands, so recording them costs no round trip each.

Every signal's command id is recorded before the signal is sent (so ``GET /commands/{id}``
says *pending*, not *unknown*, even after this API node restarts). Under load many
requests wait at once; one background thread writes whatever has queued up in a single
transaction and wakes them all.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future

from eventstore.sql.ledger import RequestLedger

log = logging.getLogger("entityflow.api")
_Item = tuple[tuple[str, str, str], Future[None]]


class AcceptedLog:
    """A queue of ``(command_id, address, command)`` written by one thread in batches."""

    def __init__(self, ledger: RequestLedger, *, max_batch: int = 1000) -> None:
        self._ledger = ledger
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0

    def record(self, command_id: str, address: str, command: str) -> Future[None]:
        """Queue one accepted command; the future resolves once it is durable."""
        done: Future[None] = Future()
        self._start()
        self._queue.put(((command_id, address, command), done))
        return done

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="entityflow-accepted", daemon=True)
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            self._write(batch)

    def _write(self, batch: list[_Item]) -> None:
        rows = [row for row, _ in batch]
        waiting = [done for _, done in batch]
        try:
            self._ledger.accept(rows)
        except Exception as exc:
            log.warning("could not record %d accepted commands: %s", len(rows), exc)
            for done in waiting:
                done.set_exception(exc)
            return
        self.batches += 1
        for done in waiting:
            done.set_result(None)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None
