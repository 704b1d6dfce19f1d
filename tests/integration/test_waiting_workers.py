"""Waiting against the clock on Apache Kafka and PostgreSQL, in worker processes
(`entityflow worker --domain tests.integration.waiting_domain`).

- A signal raced against its timeout: one recorded just before the deadline wins, one
  sent just after the timeout was recorded loses and is kept for the next wait. Which
  came first is decided by the worker and recorded; the test does not guess it from the
  clock but waits for the record each time (the answer's ``wf.SignalReceived`` committed
  before the due time; the ``wf.TimerFired`` committed before the late answer is sent).
  Each history, replayed later (when both deadlines have passed) through the current
  code, by the library and by ``entityflow replay-check``, takes the same branch.
- A human approval walks its whole ladder in seconds: requested, reminded, escalated to
  a second approver, given up, and the saga compensates; a twin execution is decided
  by the second approver once (and only once) the escalation let her. Each step is read
  back from the history over HTTP, and ``GET /approvals`` follows the ladder.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from api.app import AppParts, create_app
from api.server import ServerThread
from api.settings import Settings
from eventstore import RecordedEvent
from sagas import Host, NonDeterminismError, WorkflowNotFoundError, replay
from sagas.history import ApprovalStep, SignalReceived, TimerStarted
from tests.integration.processes import ROOT, WorkerProcess, client_host, outputs, wait_until
from tests.integration.waiting_domain import (
    DOMAIN,
    ESCALATE_AFTER,
    FIRST_APPROVER,
    GIVE_UP_AFTER,
    REMIND_AFTER,
    SECOND_APPROVER,
    Desk,
    answer,
    ask,
    grant,
    proceed,
)

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

PARTITIONS = 8
DOMAIN_MODULE = "tests.integration.waiting_domain"
TIMEOUT = 3.0
"""The answer's timeout, in seconds: long enough for the early answer to be recorded ahead
of it on a busy machine, short enough to keep the test quick."""
EARLY_BY = timedelta(seconds=1.0)
"""How long before its deadline the early answer is sent."""


@pytest.fixture
def rig(pg_url: str, kafka_bootstrap: str, namespace: str) -> Iterator[Host]:
    """The test's side: a client of the domain that runs no worker (creates the tables)."""
    with client_host(DOMAIN, pg_url, kafka_bootstrap, namespace, PARTITIONS) as host:
        yield host


@pytest.fixture
def worker(
    pg_url: str, kafka_bootstrap: str, namespace: str, workers: list[WorkerProcess]
) -> WorkerProcess:
    """One worker process holding every partition."""
    w = WorkerProcess(
        pg_url, kafka_bootstrap, namespace, domain=DOMAIN_MODULE, partitions=PARTITIONS
    )
    workers.append(w)
    w.wait_assigned()
    return w


def now() -> datetime:
    return datetime.now(UTC)


def history(rig: Host, workflow: Any, wid: str) -> list[RecordedEvent]:
    try:
        return rig.workflows.history(workflow, wid, limit=1000)
    except WorkflowNotFoundError:
        return []


def types(events: list[RecordedEvent]) -> list[str]:
    return [e.event_type for e in events]


def signals(events: list[RecordedEvent]) -> list[tuple[str, Any, datetime]]:
    """The signals an execution received, in order: (name, payload, commit time)."""
    return [
        (e.event.name, e.event.payload, e.timestamp)
        for e in events
        if isinstance(e.event, SignalReceived)
    ]


def due_time(rig: Host, wid: str, worker: WorkerProcess) -> datetime:
    """When the answer's timeout of ``wid`` is due, once its timer is recorded."""

    def started() -> list[TimerStarted]:
        return [e.event for e in history(rig, ask, wid) if isinstance(e.event, TimerStarted)]

    wait_until(lambda: bool(started()), 30, f"{wid}'s timeout to be set", context=outputs(worker))
    [timer] = started()
    return timer.due_at


def sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - now()).total_seconds()))


def send(rig: Host, signal: Any, wid: str, payload: Any) -> str:
    return asyncio.run(rig.workflows.signal(signal, wid, payload, timeout=30)).status


def replays(rig: Host, workflow: Any, wid: str) -> str:
    """Replay the stored history through the code now: every decision the code takes must
    be the recorded one (or it raises), up to the recorded end; that end's phase."""
    address = workflow.address(wid)
    engine = replay(workflow, address, rig.store.load(address).events)
    assert engine.final, f"{wid}: the replay did not reach the end of its history"
    return str(engine.phase)


def answered_first(events: list[RecordedEvent]) -> list[RecordedEvent]:
    """A history with its late answer moved ahead of the timeout it lost to."""
    fired = next(i for i, e in enumerate(events) if e.event_type == "wf.TimerFired")
    late = next(
        i
        for i, e in enumerate(events)
        if isinstance(e.event, SignalReceived) and e.event.name == answer.name
    )
    assert fired < late
    return [*events[:fired], events[late], *events[fired:late], *events[late + 1 :]]


def replay_check(store_url: str, *kinds: str) -> subprocess.CompletedProcess[str]:
    """`entityflow replay-check` over the store (the deploy gate's path)."""
    command = [sys.executable, "-m", "api.cli", "replay-check", "--domain", DOMAIN_MODULE]
    for kind in kinds:
        command += ["--type", kind]
    return subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "ENTITYFLOW_STORE": store_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- a signal against its timeout ----------------------------------------------------------


def test_a_signal_just_before_its_timeout_wins_and_one_just_after_loses_also_on_replay(
    rig: Host, pg_url: str, worker: WorkerProcess
) -> None:
    show = outputs(worker)
    rig.workflows.start(ask, {"desk": "desk-early", "seconds": TIMEOUT}, workflow_id="early")
    rig.workflows.start(ask, {"desk": "desk-late", "seconds": TIMEOUT}, workflow_id="late")
    early_due = due_time(rig, "early", worker)
    late_due = due_time(rig, "late", worker)

    # Just before: sent shortly before the deadline, and recorded (committed) before it.
    sleep_until(early_due - EARLY_BY)
    assert send(rig, answer, "early", "yes") == "applied"
    [(name, payload, received)] = signals(history(rig, ask, "early"))
    assert (name, payload) == ("answer", "yes")
    assert received < early_due, (
        f"the early answer was recorded {(received - early_due).total_seconds():.3f}s after "
        "its deadline: the machine was too slow for this test to show anything"
    )
    ahead = (early_due - received).total_seconds()

    # Just after: the timeout is recorded first, and only then is the answer sent.
    wait_until(
        lambda: "wf.TimerFired" in types(history(rig, ask, "late")),
        30,
        "the late execution's timeout to fire",
        poll=0.02,
        context=show,
    )
    assert send(rig, answer, "late", "no") == "applied"
    late_events = history(rig, ask, "late")
    [(_, _, late_received)] = signals(late_events)
    fired = next(e for e in late_events if e.event_type == "wf.TimerFired")
    behind = (late_received - late_due).total_seconds()
    assert fired.timestamp < late_received
    # The late answer is kept: the execution waits for `proceed`, not for it.
    wait_until(
        lambda: rig.client.query(Desk.missed, "desk-late").result == 1, 30, "the miss", context=show
    )
    assert rig.workflows.status(ask, "late").status == "running"
    assert send(rig, proceed, "late", None) == "applied"

    early = asyncio.run(rig.workflows.wait(ask, "early", timeout=30))
    late = asyncio.run(rig.workflows.wait(ask, "late", timeout=30))
    assert (early.status, early.result) == ("completed", "answered yes")
    assert (late.status, late.result) == ("completed", "timed out, then no")
    print(
        f"\nthe early answer was recorded {ahead * 1000:.0f} ms before its deadline and won; "
        f"the late one {behind * 1000:.0f} ms after its deadline and lost"
    )

    # The histories: the early answer cancelled its timer; the late one came after the
    # firing, before `proceed`, and was read by the wait after `proceed`.
    early_types = types(history(rig, ask, "early"))
    assert early_types == [
        "wf.Started",
        "wf.TimerStarted",
        "wf.SignalReceived",
        "wf.TimerCancelled",
        "wf.Completed",
    ]
    assert [t.status for t in early.timers] == ["cancelled"]
    late_types = types(history(rig, ask, "late"))
    assert "wf.TimerCancelled" not in late_types
    assert [(n, p) for n, p, _ in signals(history(rig, ask, "late"))] == [
        ("answer", "no"),
        ("proceed", None),
    ]
    assert late_types.index("wf.TimerFired") < late_types.index("wf.SignalReceived")
    assert [t.status for t in late.timers] == ["fired"]
    # Past the early deadline, nothing fired late for it, and its timer row is gone.
    sleep_until(early_due + timedelta(seconds=0.5))
    assert "wf.TimerFired" not in types(history(rig, ask, "early"))
    assert rig.store.load("Desk/desk-early").events == []  # no miss, nor anything else
    assert rig.store.count_timers() == 0

    # Replayed now, when both deadlines are past, each history takes its recorded branch:
    # the branches differ in their decisions (a cancelled timer and the end; a call to the
    # desk), so a replay that took the other one would raise. The order of the inputs in
    # the history is what decides: with the late answer moved ahead of the timeout, the
    # same code takes the other branch, and the replay says so.
    assert replays(rig, ask, "early") == "completed"
    assert replays(rig, ask, "late") == "completed"
    late_address = ask.address("late")
    with pytest.raises(NonDeterminismError, match="cancel timer"):
        replay(ask, late_address, answered_first(rig.store.load(late_address).events))
    checked = replay_check(pg_url, "Ask")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "all 2 histories replay (2 Ask)" in checked.stdout, checked.stdout
    assert "replay diverged" not in worker.output


# -- the escalation ladder -----------------------------------------------------------------


@pytest.fixture
def http(rig: Host) -> Iterator[httpx.Client]:
    """The HTTP API over the rig's store and mailbox (no worker of its own)."""
    app = create_app(AppParts.from_host(rig, Settings(update_timeout=30)))
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def steps(http: httpx.Client, wid: str) -> list[dict[str, Any]]:
    """The approval steps of a Grant, read from its history over HTTP (with commit times)."""
    response = http.get(f"/workflows/Grant/{wid}/history", params={"limit": 1000})
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return [
        {**e["data"], "timestamp": datetime.fromisoformat(e["timestamp"])}
        for e in response.json()["events"]
        if e["type"] == ApprovalStep.event_type
    ]


def kinds(http: httpx.Client, wid: str) -> list[str]:
    return [s["kind"] for s in steps(http, wid)]


def asked(http: httpx.Client, approver: str) -> dict[str, list[str]]:
    """``GET /approvals?approver=``: the open Grants this person may decide, and who may."""
    response = http.get("/approvals", params={"approver": approver})
    response.raise_for_status()
    return {a["workflow_id"]: a["approvers"] for a in response.json()["approvals"]}


def decide(http: httpx.Client, wid: str, by: str, approved: bool = True) -> httpx.Response:
    body = {"approved": approved, "by": by, "comment": f"{by} decides"}
    return http.post(f"/workflows/Grant/{wid}/signals/sign_off", json=body)


def test_the_escalation_ladder_walks_every_step_then_gives_up_and_compensates(
    rig: Host, http: httpx.Client, worker: WorkerProcess
) -> None:
    show = outputs(worker)
    both = ("ignored", "escalated")
    for wid in both:
        rig.workflows.start(grant, {"desk": f"desk-{wid}"}, workflow_id=wid)
    wait_until(
        lambda: all(kinds(http, wid)[:1] == ["requested"] for wid in both),
        30,
        "both approvals to be requested",
        context=show,
    )
    requested = {wid: steps(http, wid)[0]["timestamp"] for wid in both}
    assert asked(http, FIRST_APPROVER) == {wid: [FIRST_APPROVER] for wid in both}
    assert asked(http, SECOND_APPROVER) == {}

    # Before the escalation the second approver may not decide: refused, nothing recorded.
    refused = decide(http, "escalated", SECOND_APPROVER)
    assert refused.status_code == 422, refused.text
    assert FIRST_APPROVER in refused.text
    assert now() < requested["escalated"] + ESCALATE_AFTER, "refused too late to show anything"
    assert "wf.SignalReceived" not in types(history(rig, grant, "escalated"))

    wait_until(
        lambda: all(kinds(http, wid) == ["requested", "remind"] for wid in both),
        30,
        "the reminders",
        context=show,
    )
    assert asked(http, SECOND_APPROVER) == {}
    wait_until(
        lambda: all(kinds(http, wid)[-1:] == ["escalate"] for wid in both),
        30,
        "the escalations",
        context=show,
    )
    both_asked = [FIRST_APPROVER, SECOND_APPROVER]
    assert asked(http, SECOND_APPROVER) == dict.fromkeys(both, both_asked)
    # Now she may: the escalated one is decided by her; the other is left to give up.
    accepted = decide(http, "escalated", SECOND_APPROVER)
    assert accepted.status_code == 202, accepted.text

    ignored = asyncio.run(rig.workflows.wait(grant, "ignored", timeout=30))
    escalated = asyncio.run(rig.workflows.wait(grant, "escalated", timeout=30))
    assert escalated.status == "completed", escalated
    assert escalated.result == f"approved by {SECOND_APPROVER}"
    assert ignored.status == "compensated", ignored
    assert "nobody signed off" in (ignored.error or "")

    # Every step in the history: when it was taken, who was asked, and what was next.
    ladder = steps(http, "ignored")
    assert [s["kind"] for s in ladder] == ["requested", "remind", "escalate", "gave_up"]
    assert [s["approvers"] for s in ladder] == [[FIRST_APPROVER]] * 2 + [both_asked] * 2
    since = requested["ignored"]
    rungs = [since + REMIND_AFTER, since + ESCALATE_AFTER, since + GIVE_UP_AFTER]
    for step, due in zip(ladder[1:], rungs, strict=True):
        assert step["timestamp"] >= due, f"{step['kind']} came before its rung was due"
    nexts = [datetime.fromisoformat(s["next_at"]) for s in ladder[:3]]
    assert [(n - since).total_seconds() for n in nexts] == pytest.approx(
        [r.total_seconds() for r in (REMIND_AFTER, ESCALATE_AFTER, GIVE_UP_AFTER)], abs=0.5
    )
    assert ladder[3]["next_at"] is None
    decided = steps(http, "escalated")
    assert [s["kind"] for s in decided] == ["requested", "remind", "escalate", "approved"]
    assert (decided[-1]["by"], decided[-1]["comment"]) == (SECOND_APPROVER, "grace decides")
    assert decided[-1]["timestamp"] >= requested["escalated"] + ESCALATE_AFTER

    # Giving up compensated: the hold was released once; the approved one keeps its hold.
    ignored_types = types(history(rig, grant, "ignored"))
    assert ignored_types.index("wf.ApprovalStep") < ignored_types.index("wf.Compensating")
    assert ignored_types[-1] == "wf.Compensated"
    assert rig.client.query(Desk.held, "desk-ignored").result == 0
    assert rig.client.query(Desk.held, "desk-escalated").result == 1
    assert asked(http, FIRST_APPROVER) == {} and asked(http, SECOND_APPROVER) == {}
    assert rig.store.count_timers() == 0
    # Replayed now, each history walks the same ladder to the same end.
    assert replays(rig, grant, "escalated") == "completed"
    assert replays(rig, grant, "ignored") == "compensated"
