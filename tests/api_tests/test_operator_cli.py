"""``entityflow workflows ...`` and ``entityflow deadletters ...`` as an operator runs them:
the CLI as an OS process against a running API (uvicorn, in-memory mailbox, SQLite).

The same against Apache Kafka and a worker process:
``tests/integration/test_dead_letter_redrive.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from api.operator_cli import default_url, table
from api.settings import Settings
from eventstore.kafka import free_port
from tests.api_tests.conftest import Stack, StackFactory
from tests.api_tests.test_routes_repairs import failed_payout

ROOT = Path(__file__).resolve().parents[2]


def entityflow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        check=False,  # the exit code is what these tests look at
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _ok(stack: Stack, method: str, path: str, status: int = 200, **kw: Any) -> Any:
    r = stack.http.request(method, path, **kw)
    assert r.status_code == status, r.text
    return r.json()


def _wait_status(stack: Stack, wf: str, wid: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        body: dict[str, Any] = _ok(stack, "GET", f"/workflows/{wf}/{wid}", params={"wait": "0.2"})
        if body["status"] == status:
            return body
        assert time.monotonic() < deadline, f"{wf}/{wid} is {body['status']}, not {status}"


def _wait_stage(stack: Stack, wid: str, stage: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        r = stack.http.get(f"/workflows/Transfer/{wid}/queries/stage")
        if r.status_code == 200 and r.json()["result"] == stage:
            return
        assert r.status_code in (200, 404), r.text  # 404: its start is not processed yet
        assert time.monotonic() < deadline, f"Transfer/{wid} never reached {stage}"
        time.sleep(0.05)


def test_workflows_list_show_and_cancel(make_stack: StackFactory) -> None:
    with make_stack() as stack:
        source, target = stack.new_id("acct"), stack.new_id("acct")
        _ok(stack, "POST", f"/entities/Account/{source}/updates/open", json={"owner": "Ada"})
        _ok(stack, "POST", f"/entities/Account/{source}/updates/deposit", json={"amount": "50"})
        wid = stack.new_id("tr")
        transfer = {"source": source, "target": target, "amount": "20"}
        _ok(stack, "POST", "/workflows/Transfer", 202, json={"workflow_id": wid, "input": transfer})
        _wait_stage(stack, wid, "waiting")
        url = ["--url", stack.url]

        listed = entityflow("workflows", "list", "--type", "Transfer", "--status", "running", *url)
        assert listed.returncode == 0, listed.stderr
        header, *rows = listed.stdout.splitlines()
        assert header.split()[:3] == ["TYPE", "ID", "STATUS"]
        assert any(r.split()[:3] == ["Transfer", wid, "running"] for r in rows), listed.stdout

        as_json = entityflow("workflows", "list", "--type", "Transfer", "--json", *url)
        assert as_json.returncode == 0, as_json.stderr
        found = json.loads(as_json.stdout)["executions"]
        assert [e["workflow_id"] for e in found if e["workflow_id"] == wid] == [wid]

        shown = entityflow("workflows", "show", "Transfer", wid, *url)
        assert shown.returncode == 0, shown.stderr
        out = shown.stdout
        assert out.splitlines()[0] == f"Transfer/{wid}: running"
        assert "memo stage: waiting" in out  # what the code keeps (ctx.memo)
        assert f"Account/{source}" in out and "withdraw" in out  # the step
        assert "history:" in out and "VERSION" in out

        cancelled = entityflow("workflows", "cancel", "Transfer", wid, "--reason", "ops", *url)
        assert cancelled.returncode == 0, cancelled.stderr
        assert f"cancel of Transfer/{wid} recorded" in cancelled.stdout
        _wait_status(stack, "Transfer", wid, "compensated")
        after = entityflow("workflows", "show", "Transfer", wid, "--json", *url)
        shown_json = json.loads(after.stdout)
        assert shown_json["status"]["status"] == "compensated"
        assert shown_json["memo"]["stage"] == "waiting"  # where it was when cancelled
        assert shown_json["history"][0]["type"] == "wf.Started"

        missing = entityflow("workflows", "show", "Transfer", "no-such-id", *url)
        assert missing.returncode == 1
        assert "404 workflow_not_found" in missing.stderr


def test_workflows_repair_skips_a_failed_compensation(make_stack: StackFactory) -> None:
    with make_stack() as stack:
        wid, index, _ = failed_payout(stack)
        url = ["--url", stack.url]
        refused = entityflow("workflows", "repair", "Payout", wid, str(index), "skip", *url)
        assert refused.returncode == 1
        assert "409 workflow_refused" in refused.stderr and "needs a reason" in refused.stderr
        done = entityflow(
            "workflows", "repair", "Payout", wid, str(index), "skip", "--reason", "by hand", *url
        )
        assert done.returncode == 0, done.stderr
        assert f"skip of compensation #{index} of Payout/{wid} recorded" in done.stdout
        status = _wait_status(stack, "Payout", wid, "compensated")
        assert status["compensations"][0]["error"] == "skipped by an operator: by hand"


def test_deadletters_list_show_and_redrive(make_stack: StackFactory) -> None:
    with make_stack() as stack:
        gadget = stack.new_id("g")
        cid = _ok(stack, "POST", f"/entities/Gadget/{gadget}/signals/explode", 202, json={})[
            "command_id"
        ]
        assert stack.wait_outcome(cid)["status"] == "dead_lettered"
        url = ["--url", stack.url]

        listed = entityflow("deadletters", "list", *url)
        assert listed.returncode == 0, listed.stderr
        header, row = listed.stdout.splitlines()
        assert header.split() == ["ID", "AT", "ADDRESS", "COMMAND", "REDRIVEN", "ERROR"]
        dl_id = row.split()[0]
        assert f"Gadget/{gadget}" in row and "explode" in row and "RuntimeError: boom" in row

        shown = entityflow("deadletters", "show", dl_id, "--json", *url)
        assert json.loads(shown.stdout)["command_id"] == cid

        redriven = entityflow("deadletters", "redrive", dl_id, *url)
        assert redriven.returncode == 0, redriven.stderr
        assert f"/commands/{cid}" in redriven.stdout

        again = entityflow("deadletters", "redrive", dl_id, *url)
        assert again.returncode == 1
        assert "409 already_redriven" in again.stderr
        assert "GET /commands/" in again.stderr  # the hint: where to look instead

        relisted = json.loads(entityflow("deadletters", "list", "--json", *url).stdout)
        first = relisted["dead_letters"][0]
        assert first["id"] == dl_id and first["redriven_at"] is not None

        bad = entityflow("deadletters", "redrive", "not-an-id", *url)
        assert bad.returncode == 1 and "422" in bad.stderr


def test_an_unreachable_api_says_what_to_do_and_exits_non_zero() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (("deadletters", "list"), ("workflows", "list")):
        done = entityflow(*args, "--url", url)
        assert done.returncode == 3
        assert f"cannot reach {url}" in done.stderr
        assert "is `entityflow serve` running?" in done.stderr
        assert done.stdout == ""


def test_the_default_url_follows_the_api_settings() -> None:
    assert default_url(Settings(api_host="0.0.0.0", api_port=8123)) == "http://127.0.0.1:8123"
    assert default_url(Settings(api_host="10.1.2.3", api_port=80)) == "http://10.1.2.3:80"


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([], "(none)"),
        ([("a", None), ("long-value", "x\ny")], "K           V\na           -\nlong-value  x y"),
        ([("\x1b[2Jwiped", "\x07bell")], "K          V\n?[2Jwiped  ?bell"),
    ],
)
def test_tables_pad_columns_and_keep_one_line_per_row(
    rows: list[tuple[Any, ...]], expected: str
) -> None:
    assert table(("K", "V"), rows) == expected
