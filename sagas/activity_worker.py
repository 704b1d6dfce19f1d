"""The activity worker: takes activity tasks from the broker and runs them in threads.

Tasks come from the mailbox's activity topic through a consumer group of their own, so
activity workers scale apart from entity workers (``entityflow worker`` runs both unless
told otherwise). Each task is one attempt: the function runs in a thread of a bounded
pool, its result or error goes back to the workflow as a reply message, and only then is
the task's offset committed (the thread is free as soon as the answer is handed to the
producer; the offset waits for the broker's acknowledgement, not the thread). A worker
killed mid-attempt therefore leaves the task
uncommitted; the workflow does not wait for that: the attempt's start-to-close (or
heartbeat) timeout fails it and the retry policy schedules the next one, and a late
answer to the old attempt is ignored.

While every thread is busy the consumer is paused, not left: it still polls, so it
keeps its partitions, and heartbeats from running attempts keep flowing.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from actors import Delivery, Envelope, Mailbox, TaskConsumer
from actors.envelopes import reply_envelope
from eventstore import Outcome, Store, tracing
from sagas.activities import (
    Activity,
    ActivityCancelledError,
    ActivityInfo,
    ApplicationError,
    _Attempt,
    run_attempt,
)
from sagas.activity_tasks import (
    CANCELLED,
    NON_RETRYABLE,
    UNKNOWN_ACTIVITY,
    ActivityTask,
    heartbeat_envelope,
)

log = logging.getLogger("entityflow.activities")

IDLE_POLL = 0.5
"""Seconds a poll waits for tasks while none is running. Each poll of a Kafka consumer
costs the process CPU and the worker loop the GIL: at 0.05 s an idle activity consumer
added about 0.1 ms of CPU to each W1 update of its worker process (0.86 ms per update
against 0.74, read from ``/proc/<pid>/stat`` under ``python -m bench kafka``'s update
load). Tasks arriving end the wait at once; :meth:`ActivityWorker.request_stop` wakes it."""
BUSY_POLL = 0.1
"""Seconds a poll waits while attempts run, so finished ones are committed promptly."""


@dataclass
class ActivityStats:
    started: int = 0
    succeeded: int = 0
    failed: int = 0
    heartbeats: int = 0


class ActivityWorker:
    """Runs the activities it knows, ``concurrency`` at a time, until :meth:`stop`."""

    def __init__(
        self,
        mailbox: Mailbox,
        activities: Sequence[Activity[Any, Any]],
        *,
        group: str,
        concurrency: int = 16,
        store: Store | None = None,
    ) -> None:
        """``store``: where a running attempt learns, at its heartbeats, that its workflow
        was cancelled or has finished (without it, attempts always run to the end)."""
        self.mailbox = mailbox
        self.store = store
        self.activities = {a.name: a for a in activities}
        self.group = group
        self.concurrency = concurrency
        self.stats = ActivityStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="activity")
        self._lock = threading.Lock()
        self._running: set[tuple[int, int]] = set()
        self._done: dict[int, set[int]] = {}
        self._next: dict[int, int] = {}
        self._freed = threading.Event()
        self._consumer: TaskConsumer | None = None

    @property
    def in_flight(self) -> int:
        """Attempts running now (read by the metrics)."""
        return len(self._running)

    def start(self) -> ActivityWorker:
        self._thread = threading.Thread(target=self._loop, name="activity-worker", daemon=True)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask the loop to end without waiting for it (see :meth:`stop`)."""
        self._stop.set()
        consumer = self._consumer
        if consumer is not None:
            consumer.wake()

    def stop(self, timeout: float = 10.0) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the loop ---------------------------------------------------------------------------

    def _loop(self) -> None:
        consumer = self._consumer = self.mailbox.task_consumer(self.group)
        paused = False
        committed_at = 0.0
        try:
            while not self._stop.is_set():
                room = self.concurrency - len(self._running)
                if room <= 0:
                    # Every thread is busy: fetch nothing, but keep polling so the group
                    # still hears from this member, and wake as soon as a thread frees.
                    consumer.pause()  # again each time: a rebalance may add partitions
                    paused = True
                    deliveries = consumer.poll(0, 1)
                    self._freed.wait(0.1)
                    self._freed.clear()
                else:
                    if paused:
                        consumer.resume()
                        paused = False
                    wait = BUSY_POLL if self._running else IDLE_POLL
                    deliveries = consumer.poll(wait, room)
                for partition in consumer.take_assigned():
                    with self._lock:  # reading restarts at the partition's commit
                        self._next.pop(partition, None)
                for delivery in deliveries:
                    self._submit(delivery)
                # One commit per tenth of a second at most: a round trip to the broker
                # per finished task would bound the worker at a few hundred tasks/s.
                if time.monotonic() - committed_at >= 0.1:
                    commits = self._committable()
                    if commits:
                        consumer.commit(commits)
                        committed_at = time.monotonic()
            commits = self._committable()
            if commits:
                consumer.commit(commits)
        except Exception:
            log.exception("the activity worker stopped")
        finally:
            consumer.close()

    def _submit(self, delivery: Delivery) -> None:
        key = (delivery.partition, delivery.offset)
        with self._lock:
            self._next.setdefault(delivery.partition, delivery.offset)
            self._running.add(key)
        future = self._pool.submit(self._run, delivery)
        future.add_done_callback(lambda ran: self._ran(key, ran))

    def _ran(self, key: tuple[int, int], ran: Future[Future[None] | None]) -> None:
        """The attempt's thread is free; the task is done once its answer is acknowledged.

        A task whose attempt raised out of the thread (its answer could not even be handed
        over) is done too: the attempt's timeout on the workflow's side retries it. One
        that never ran (cancelled as the pool shut down) is not: it stays uncommitted for
        the partition's next owner.
        """
        with self._lock:
            self._running.discard(key)
        self._freed.set()
        if ran.cancelled():
            return
        failed = ran.exception()
        answered = ran.result() if failed is None else None
        if failed is not None:
            log.warning("activity task %s was not answered: %s", key, failed)
        if answered is None:
            self._finished(key)
        else:
            answered.add_done_callback(lambda sent: self._acknowledged(key, sent))

    def _acknowledged(self, key: tuple[int, int], sent: Future[None]) -> None:
        exc = sent.exception()
        if exc is not None:  # retried on the workflow's side, as above
            log.warning("could not send the answer to activity task %s: %s", key, exc)
        self._finished(key)

    def _finished(self, key: tuple[int, int]) -> None:
        with self._lock:
            self._done.setdefault(key[0], set()).add(key[1])

    def _committable(self) -> Mapping[int, int]:
        """Per partition, the offset after the longest run of finished tasks."""
        out: dict[int, int] = {}
        with self._lock:
            for partition, done in self._done.items():
                nxt = self._next.get(partition)
                if nxt is None:
                    continue
                moved = nxt
                while moved in done:
                    done.discard(moved)
                    moved += 1
                if moved != nxt:
                    self._next[partition] = moved
                    out[partition] = moved
        return out

    # -- one attempt ------------------------------------------------------------------------

    def _run(self, delivery: Delivery) -> Future[None] | None:
        """Run one task; returns the sending of its answer (None: nothing to answer)."""
        env = delivery.envelope
        if env is None:
            log.warning(
                "an activity task that cannot be decoded was passed over: %s", delivery.error
            )
            return None
        try:
            task = ActivityTask.model_validate(env.args)
        except Exception as exc:
            log.warning("a malformed activity task was passed over: %s", exc)
            return None
        if task.start_by is not None:
            if datetime.now(UTC) > task.start_by:
                # The workflow has failed this attempt as not taken in time (and scheduled
                # the next one, if its policy allows): running it would be wasted work.
                log.info("%s was taken after its schedule-to-start: passed over", env.command_id)
                return None
            self.mailbox.send(heartbeat_envelope(task, None, started=True))
        act = self.activities.get(env.name)
        if act is None:
            return self._answer(
                env,
                task,
                "rejected",
                None,
                f"no worker here runs activity {env.name!r}",
                UNKNOWN_ACTIVITY,
            )
        info = ActivityInfo(
            name=act.name,
            workflow=task.workflow,
            seq=task.seq,
            attempt=task.attempt,
            idempotency_key=task.idempotency_key,
            heartbeat_details=task.heartbeat_details,
            heartbeat_timeout=task.heartbeat_timeout,
        )
        attributes: tracing.Attributes = {
            "entityflow.workflow": task.workflow,
            "entityflow.step.seq": task.seq,
            "entityflow.step.attempt": task.attempt,
            "entityflow.command_id": env.command_id,
        }
        with tracing.span(
            f"activity {act.name}", parent=env.traceparent, kind="consumer", attributes=attributes
        ) as traced:
            outcome, answered = self._attempt(env, task, act, info)
            traced.set("entityflow.outcome", outcome)
            if outcome != "applied":
                traced.fail(outcome)
        return answered

    def _attempt(
        self, env: Envelope, task: ActivityTask, act: Activity[Any, Any], info: ActivityInfo
    ) -> tuple[str, Future[None]]:
        """Run one attempt and answer it: how it ended (applied, rejected), and the
        sending of the answer."""
        attempt = _Attempt(info, report=lambda details: None)
        attempt.report = lambda details: self._heartbeat(task, attempt, details)
        self.stats.started += 1
        started = time.monotonic()
        try:
            result = run_attempt(act, task.arguments, attempt)
        except ActivityCancelledError as exc:
            self.stats.failed += 1
            code = f"{NON_RETRYABLE}{CANCELLED}"
            return "rejected", self._answer(env, task, "rejected", None, str(exc), code)
        except ApplicationError as exc:
            self._send_held_details(task, attempt)
            self.stats.failed += 1
            code = f"{NON_RETRYABLE}{exc.type}" if exc.non_retryable else exc.type
            return "rejected", self._answer(env, task, "rejected", None, f"{exc.type}: {exc}", code)
        except Exception as exc:
            self._send_held_details(task, attempt)
            self.stats.failed += 1
            name = type(exc).__name__
            last = traceback.format_exception_only(exc)[-1].strip()
            return "rejected", self._answer(env, task, "rejected", None, last, name)
        self.stats.succeeded += 1
        log.debug(
            "%s attempt %d took %.3fs", env.command_id, task.attempt, time.monotonic() - started
        )
        return "applied", self._answer(env, task, "applied", result, None, None)

    def _heartbeat(self, task: ActivityTask, attempt: _Attempt, details: Any) -> None:
        self.stats.heartbeats += 1
        self.mailbox.send(heartbeat_envelope(task, details))
        if self.store is None or attempt.cancelled.is_set():
            return
        try:
            row = self.store.execution(task.workflow)
        except Exception:
            return  # the store is away: keep going, the next heartbeat asks again
        if row is None or row.status != "running" or row.summary.get("cancelled"):
            attempt.cancelled.set()

    def _send_held_details(self, task: ActivityTask, attempt: _Attempt) -> None:
        """Before a failure answer: the latest details the throttle held back, so the
        next attempt resumes from them (both go to the workflow's partition, in order)."""
        held, details = attempt.unsent()
        if held:
            self.mailbox.send(heartbeat_envelope(task, details))

    def _answer(
        self,
        env: Envelope,
        task: ActivityTask,
        status: Any,
        result: Any,
        error: str | None,
        code: str | None,
    ) -> Future[None]:
        """Send the answer; the task is committed past only once the broker has it."""
        outcome: Outcome[Any] = Outcome(
            env.command_id, env.address, env.name, status, result, error=error, code=code
        )
        route = env.reply_to or ""
        reply = reply_envelope(route.removeprefix("actor:"), outcome, env.correlation)
        return self.mailbox.send(reply)
