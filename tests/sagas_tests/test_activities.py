"""Activities on an in-process host: retries, errors that stop them, timeouts, heartbeats.

The in-memory mailbox stands in for Kafka here (fast); the same activities run on
Apache Kafka with worker processes killed mid-attempt in
``tests/integration/test_activity_workers.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import Future
from decimal import Decimal
from typing import Any

import pytest

from actors import Envelope, InMemoryMailbox, MailboxUnavailableError
from examples.shop import ENTITIES, Account
from sagas import (
    ActivityCancelledError,
    ActivityEnvironment,
    Domain,
    Host,
    InvalidWorkflowInputError,
    Workflow,
    WorkflowDefinitionError,
    activity,
    heartbeat,
)
from sagas.activity_tasks import ActivityTask, activity_address
from sagas.activity_worker import IDLE_POLL, ActivityWorker
from sagas.timeline import build_timeline
from tests.sagas_tests.activity_support import (
    ACTIVITIES,
    ACTIVITY_WORKFLOWS,
    CALLS,
    CANCELLED_SEEN,
    KEYS,
    RESUMED_FROM,
    Receipt,
    async_greeting,
    charge_card,
    count_to,
    declined,
    greet,
    patient,
    pay,
    progress,
    queued,
    refundable,
    sleepy,
    wait_for_cancel,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _fresh_counts() -> None:
    """The outside world the activities talk to starts empty for each test."""
    CALLS.clear()
    KEYS.clear()
    RESUMED_FROM.clear()
    CANCELLED_SEEN.clear()


@pytest.fixture
def host(store_url: str) -> Iterator[Host]:
    domain = Domain(ENTITIES, workflows=ACTIVITY_WORKFLOWS, activities=ACTIVITIES)
    with domain.host(store_url, mailbox=InMemoryMailbox(), tick_interval=0.02) as running:
        yield running


async def finish(host: Host, wf: Workflow[Any, Any], wid: str) -> Any:
    status = await host.workflows.wait(wf, wid, timeout=20)
    assert status.status == "completed", status
    return status.result


async def test_a_flaky_activity_is_retried_until_it_succeeds(host: Host) -> None:
    wid = host.workflows.start(pay, {"card": "flaky-1", "fail_first": 2})
    result = await finish(host, pay, wid)
    assert result["receipt"]["attempt"] == 3
    assert result["is_receipt"] is True  # decoded to the declared return type
    assert CALLS["flaky-1"] == 3
    assert KEYS["flaky-1"] == {f"workflow:Pay/{wid}#1"}  # one key for every attempt
    step = host.workflows.status(pay, wid).steps[0]
    assert (step.address, step.command, step.attempts) == ("activity:charge_card", "charge_card", 3)


async def test_the_last_failure_reaches_the_workflow_as_an_activity_error(host: Host) -> None:
    wid = host.workflows.start(pay, {"card": "dead-1", "fail_first": 99, "attempts": 3})
    result = await finish(host, pay, wid)
    assert result == {
        "failed": "ConnectionError",
        "attempts": 3,
        "reason": "ConnectionError: payment API unreachable (attempt 3)",
    }
    assert CALLS["dead-1"] == 3


async def test_a_non_retryable_error_stops_the_retries_at_once(host: Host) -> None:
    wid = host.workflows.start(declined, {"tag": "declined-1"})
    result = await finish(host, declined, wid)
    assert result == {"type": "CardDeclined", "non_retryable": True, "n": 1}
    assert CALLS["declined-1"] == 1
    assert "CardDeclined: card declined" in (
        host.workflows.status(declined, wid).steps[0].error or ""
    )


async def test_an_attempt_that_overruns_its_timeout_is_failed_and_retried(host: Host) -> None:
    wid = host.workflows.start(sleepy, {"tag": "slow-1", "seconds": 1.5})
    result = await finish(host, sleepy, wid)
    assert result["timed_out"] is True
    assert result["attempts"] == 2
    assert "start-to-close timeout of 0.5s" in result["reason"]
    assert CALLS["slow-1"] == 2
    # The late answers of both attempts found the step already decided: nothing changed.
    await asyncio.sleep(2.0)
    assert host.workflows.status(sleepy, wid).steps[0].code == "timed_out:start_to_close"


async def test_a_step_waiting_to_retry_shows_its_attempts_last_error_and_next_try(
    host: Host,
) -> None:
    """What the status (and so GET /workflows/{type}/{id}) and the timeline show of an
    activity between two attempts: the attempt count, the last error, when it is tried
    next; the history keeps each attempt with its error."""
    wid = host.workflows.start(patient, {"card": "patient-1", "fail_first": 1})
    await host.workflows.wait(patient, wid, until={"running"})
    for _ in range(500):
        step = host.workflows.status(patient, wid).steps[0]
        if step.attempts == 2:
            break
        await asyncio.sleep(0.01)
    assert (step.status, step.attempts, step.code) == ("pending", 2, "ConnectionError")
    assert step.error == "ConnectionError: payment API unreachable (attempt 1)"
    assert step.not_before is not None and step.scheduled_at is not None
    assert 29 <= (step.not_before - step.scheduled_at).total_seconds() <= 31
    assert CALLS["patient-1"] == 1  # the retry waits on a durable timer, not a worker
    timeline = build_timeline(host.workflows.history(patient, wid))
    (entry,) = [e for e in timeline.entries if e.kind == "activity"]
    first = entry.attempts[0]
    assert (first.attempt, first.status, first.code) == (1, "rejected", "ConnectionError")
    assert [a.status for a in entry.attempts] == ["rejected", "pending"]


async def test_async_activities_run_too(host: Host) -> None:
    wid = host.workflows.start(greet, {"name": "Ada"})
    assert await finish(host, greet, wid) == "hello Ada"


async def test_a_retry_resumes_from_the_last_heartbeat(host: Host) -> None:
    wid = host.workflows.start(progress, {"tag": "beat-1", "items": 5, "crash_at": 3})
    assert await finish(host, progress, wid) == 5
    assert CALLS["beat-1"] == 2
    assert RESUMED_FROM["beat-1"] == 3  # the second attempt started at the reported item
    assert host.workflows.status(progress, wid).steps[0].heartbeat_details is not None


async def test_bad_arguments_are_refused_naming_the_activity_and_field(host: Host) -> None:
    with pytest.raises(InvalidWorkflowInputError, match=r"charge_card.*amount"):
        charge_card.encode_arguments(("c",), {"amount": "not a number"})
    with pytest.raises(InvalidWorkflowInputError, match=r"charge_card.*unexpected keyword"):
        charge_card.encode_arguments(("c", Decimal(1)), {"tip": 1})
    with pytest.raises(InvalidWorkflowInputError, match="invalid options for activity"):
        charge_card.options(start_to_close=-1)


async def test_calling_an_activity_directly_runs_the_function() -> None:
    assert await async_greeting("Linus") == "hello Linus"
    with pytest.raises(RuntimeError, match="only inside a running activity"):
        charge_card("direct-1", Decimal("1.50"))  # it asks activity_info()


def test_an_activity_a_workflow_runs_must_be_listed_in_the_domain() -> None:
    with pytest.raises(WorkflowDefinitionError, match=r"activity 'charge_card'.*does not list"):
        Domain(ENTITIES, workflows=[pay], activities=[])


def test_two_activities_may_not_share_a_name() -> None:
    @activity(name="charge_card")
    def impostor(card: str) -> None: ...

    with pytest.raises(WorkflowDefinitionError, match="two activities are named 'charge_card'"):
        Domain(ENTITIES, activities=[charge_card, impostor])


def test_activity_parameters_need_annotations_and_names() -> None:
    with pytest.raises(WorkflowDefinitionError, match="needs a type annotation"):

        @activity
        def untyped(x) -> None: ...  # type: ignore[no-untyped-def]

    with pytest.raises(WorkflowDefinitionError, match=r"\*args and \*\*kwargs"):

        @activity
        def variadic(*xs: int) -> None: ...


async def test_a_worker_that_runs_no_activities_leaves_tasks_to_others(store_url: str) -> None:
    """An entity-only worker (ENTITYFLOW_ACTIVITY_CONCURRENCY=0) beside an activity one."""
    domain = Domain(ENTITIES, workflows=ACTIVITY_WORKFLOWS, activities=ACTIVITIES)
    mailbox = InMemoryMailbox()
    with domain.host(store_url, mailbox=mailbox, tick_interval=0.02, run_activities=False) as h:
        assert h.activities is None
        wid = h.workflows.start(greet, {"name": "Grace"})
        await h.workflows.wait(greet, wid, until={"running"})  # its start is processed
        await asyncio.sleep(0.5)
        assert h.workflows.status(greet, wid).status == "running"
        assert [e.name for e in mailbox.task_log()] == ["async_greeting"]
        helper = domain.host(store_url, mailbox=mailbox, run_worker=False)
        assert helper.activities is not None
        helper.activities.start()
        try:
            assert await finish(h, greet, wid) == "hello Grace"
        finally:
            helper.activities.stop()
            helper.stop()


def test_an_idle_activity_worker_stops_without_sitting_out_its_poll() -> None:
    """Idle, the loop polls for IDLE_POLL seconds at a time (each poll costs the worker
    process CPU); stopping it wakes the poll instead of waiting for it to end."""
    worker = ActivityWorker(InMemoryMailbox(), ACTIVITIES, group="idle").start()
    time.sleep(0.2)  # the loop is inside its first idle poll
    started = time.monotonic()
    worker.stop()
    assert time.monotonic() - started < IDLE_POLL / 2


class _HeldAnswers(InMemoryMailbox):
    """Answers handed to it stay unacknowledged until the test says (a slow broker)."""

    def __init__(self) -> None:
        super().__init__(partitions=1)
        self.answers: list[tuple[Envelope, Future[None]]] = []

    def send(self, envelope: Envelope) -> Future[None]:
        if envelope.kind != "reply":
            return super().send(envelope)
        held: Future[None] = Future()
        self.answers.append((envelope, held))
        return held


def test_a_task_is_committed_past_only_once_the_broker_has_its_answer() -> None:
    """The attempt's thread is free once it hands its answer over, but the task's position
    waits for the acknowledgement: a worker that dies before it runs the task again."""
    mailbox = _HeldAnswers()
    task = ActivityTask(workflow="Greet/g1", seq=1, attempt=1, idempotency_key="k", arguments={})
    for n in range(3):
        mailbox.send(
            Envelope(
                address=activity_address(async_greeting.name),
                kind="command",
                name=async_greeting.name,
                args=task.model_copy(update={"arguments": {"name": f"n{n}"}}).model_dump(
                    mode="json"
                ),
                reply_to="actor:Greet/g1",
                correlation=f"1.{n}",
            )
        )
    worker = ActivityWorker(mailbox, ACTIVITIES, group="acks", concurrency=1).start()
    try:
        deadline = time.monotonic() + 10
        while len(mailbox.answers) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        # One thread ran all three: none waited for its answer's acknowledgement.
        assert [e.reply.result for e, _ in mailbox.answers if e.reply] == [
            "hello n0",
            "hello n1",
            "hello n2",
        ]
        time.sleep(0.3)  # commits are at most every 0.1 s
        assert mailbox._task_groups["acks"].committed.get(0, 0) == 0
        mailbox.answers[1][1].set_result(None)
        time.sleep(0.3)
        assert mailbox._task_groups["acks"].committed.get(0, 0) == 0, "past an unanswered task"
        mailbox.answers[0][1].set_result(None)
        mailbox.answers[2][1].set_exception(MailboxUnavailableError("down"))
        deadline = time.monotonic() + 5
        while mailbox._task_groups["acks"].committed.get(0, 0) < 3:
            assert time.monotonic() < deadline, "the acknowledged tasks were never committed"
            time.sleep(0.02)
    finally:
        worker.stop()


def test_a_task_that_never_ran_is_not_committed_past() -> None:
    """A task cancelled in the pool as the worker shut down was never run: its position
    stays where it was, so the partition's next owner runs it."""
    worker = ActivityWorker(InMemoryMailbox(), ACTIVITIES, group="cancelled")
    worker._next[0] = 0  # as _submit leaves it for tasks at offsets 0 and 1
    worker._running |= {(0, 0), (0, 1)}
    never: Future[Future[None] | None] = Future()
    never.cancel()
    done: Future[Future[None] | None] = Future()
    done.set_result(None)  # passed over (undecodable): nothing to answer, done
    worker._ran((0, 1), done)
    worker._ran((0, 0), never)
    assert worker.in_flight == 0
    assert worker._committable() == {}, "committed past a task that never ran"
    worker._pool.shutdown()


async def test_an_attempt_no_worker_takes_in_time_fails_on_its_schedule_to_start(
    store_url: str,
) -> None:
    """No activity worker: each attempt times out after its schedule-to-start (0.3 s), not
    its 60 s start-to-close, is retried, and the last failure names the timeout."""
    domain = Domain(ENTITIES, workflows=ACTIVITY_WORKFLOWS, activities=ACTIVITIES)
    mailbox = InMemoryMailbox()
    with domain.host(store_url, mailbox=mailbox, tick_interval=0.02, run_activities=False) as h:
        began = time.monotonic()
        wid = h.workflows.start(queued, {"tag": "queued-1", "seconds": 0.3})
        assert await finish(h, queued, wid) == {
            "timeout": "schedule_to_start",
            "type": "timed_out",
            "attempts": 2,
        }
        assert 0.6 <= time.monotonic() - began < 10
        step = h.workflows.status(queued, wid).steps[0]
        assert step.code == "timed_out:schedule_to_start"
        assert "schedule-to-start timeout of 0.3s" in (step.error or "")
        assert step.started_at is None
        assert sorted(e.args["attempt"] for e in mailbox.task_log()) == [1, 2]
        # A worker that comes now passes the stale tasks over instead of running them.
        late = domain.host(store_url, mailbox=mailbox, run_worker=False)
        assert late.activities is not None
        late.activities.start()
        try:
            await asyncio.sleep(0.5)
            assert CALLS["queued-1"] == 0
        finally:
            late.activities.stop()
            late.stop()


async def test_an_attempt_taken_in_time_runs_past_its_schedule_to_start(host: Host) -> None:
    """The worker says when it took the attempt; a longer run is not a timeout."""
    wid = host.workflows.start(queued, {"tag": "queued-2", "seconds": 5})
    assert await finish(host, queued, wid) == {"result": "woke"}
    step = host.workflows.status(queued, wid).steps[0]
    assert step.started_at is not None and step.attempts == 1
    assert step.heartbeat_at is None  # taking an attempt is not progress


async def test_a_receipt_is_a_model_not_a_dict(host: Host) -> None:
    wid = host.workflows.start(pay, {"card": "model-1"})
    result = await finish(host, pay, wid)
    assert Receipt.model_validate(result["receipt"]).amount == Decimal("9.99")


async def test_cancelling_a_workflow_stops_its_running_activity_then_compensates(
    host: Host,
) -> None:
    await host.client.update(Account.open, "refund-1", owner="Ada")
    await host.client.update(Account.deposit, "refund-1", amount=Decimal(10))
    wid = host.workflows.start(refundable, {"tag": "cancel-1", "account": "refund-1"})
    for _ in range(500):
        if CALLS["cancel-1"]:
            break
        await asyncio.sleep(0.01)
    assert host.client.query(Account.balance, "refund-1").result == Decimal(5)
    asked = time.monotonic()
    await host.workflows.cancel(refundable, wid, "the customer changed their mind")
    status = await host.workflows.wait(refundable, wid, timeout=20)
    assert status.status == "compensated", status
    assert time.monotonic() - asked < 10  # not the activity's 30 s
    assert {"cancel-1"} == CANCELLED_SEEN  # the activity saw it at a heartbeat
    assert host.client.query(Account.balance, "refund-1").result == Decimal(10)
    step = next(s for s in status.steps if s.command == "wait_for_cancel")
    assert step.code == "non_retryable:ActivityCancelled"


def test_an_activity_runs_alone_in_its_environment() -> None:
    env = ActivityEnvironment(attempt=2, heartbeat_details=1)
    assert env.run(count_to, "env-1", 4) == 4
    assert env.heartbeats == [1, 2, 3]  # resumed at the details a retry would carry
    assert RESUMED_FROM["env-1"] == 1
    assert KEYS["env-1"] == {"workflow:Test/test#1"}
    with pytest.raises(InvalidWorkflowInputError, match="count_to"):
        env.run(count_to, "env-1", "many")  # type: ignore[arg-type]


def test_a_cancellation_injected_in_the_environment_reaches_the_activity() -> None:
    env = ActivityEnvironment()
    env.on_heartbeat = lambda details: env.cancel() if len(env.heartbeats) == 3 else None
    with pytest.raises(ActivityCancelledError, match="no longer wants this attempt"):
        env.run(wait_for_cancel, "env-2", 30.0)
    assert {"env-2"} == CANCELLED_SEEN
    assert len(env.heartbeats) == 3


def test_heartbeat_details_that_are_not_json_are_refused_where_they_are_given() -> None:
    @activity
    def leaky(tag: str) -> None:
        heartbeat(object())

    with pytest.raises(TypeError, match=r"heartbeat details must be JSON values.*not object"):
        ActivityEnvironment().run(leaky, "x")
