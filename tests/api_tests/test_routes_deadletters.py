"""``/deadletters`` over real HTTP (uvicorn in a thread, in-memory mailbox, SQLite): a
crashed command is listed with its error, re-driven once the cause is fixed, applied once,
and a second re-drive is a 409; bad ids are 4xx with a message, never a 500.

The same routes against Apache Kafka and a worker OS process:
``tests/integration/test_dead_letter_redrive.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from actors import InMemoryMailbox
from api.app import AppParts, create_app
from api.client import EntityflowClient, RejectedError
from api.server import ServerThread
from api.settings import Settings
from tests.integration.redrive_domain import DOMAIN


@pytest.fixture
def http(tmp_path: Path) -> Iterator[httpx.Client]:
    mailbox = InMemoryMailbox(partitions=2)
    host = DOMAIN.host(f"sqlite:///{tmp_path / 'store.db'}", mailbox=mailbox)
    host.start()
    try:
        app = create_app(AppParts.from_host(host, Settings(update_timeout=20)))
        with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as c:
            yield c
    finally:
        host.stop()
        mailbox.close()


def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def _outcome(
    http: httpx.Client, command_id: str, timeout: float = 20, *, besides: str = "pending"
) -> dict[str, Any]:
    """Poll until the outcome reads something else than ``besides`` (after a re-drive it
    reads ``dead_lettered`` until the worker has run the command again)."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = _ok(http.get(f"/commands/{command_id}"))
        if body["status"] not in ("pending", besides):
            return body
        assert time.monotonic() < deadline, f"{command_id} still pending"
        time.sleep(0.02)


def test_a_crashed_command_is_listed_redriven_after_the_fix_and_applied_once(
    http: httpx.Client,
) -> None:
    cid = _ok(http.post("/entities/Parcel/p-1/signals/ship", json={}), 202)["command_id"]
    assert _outcome(http, cid)["status"] == "dead_lettered"

    page = _ok(http.get("/deadletters"))
    assert page["next_after"] is None
    (listed,) = page["dead_letters"]
    assert set(listed) == {
        "id",
        "entity_type",
        "entity_id",
        "command",
        "error",
        "source",
        "at",
        "redriven_at",
    }
    assert (listed["entity_type"], listed["entity_id"], listed["command"]) == (
        "Parcel",
        "p-1",
        "ship",
    )
    assert listed["error"] == "RuntimeError: no label: the printer is jammed"
    assert listed["redriven_at"] is None
    detail = _ok(http.get(f"/deadletters/{listed['id']}"))
    assert detail["command_id"] == cid and detail["redrivable"] is True
    assert detail["args"] == {}

    _ok(http.post("/entities/Parcel/p-1/updates/label", json={}))  # the fix
    accepted = _ok(http.post(f"/deadletters/{listed['id']}/redrive"), 202)
    assert accepted["command_id"] == cid and accepted["outcome"] == f"/commands/{cid}"
    applied = _outcome(http, cid, besides="dead_lettered")
    assert applied["status"] == "applied"
    assert applied["result"] == 1

    again = http.post(f"/deadletters/{listed['id']}/redrive")
    assert again.status_code == 409, again.text
    assert again.json()["error"] == "already_redriven"
    assert again.json()["command_id"] == cid
    time.sleep(0.3)  # give a wrongly sent copy time to be applied
    state = _ok(http.get("/entities/Parcel/p-1"))
    assert state["state"]["shipped"] == 1
    assert _ok(http.get("/deadletters"))["dead_letters"][0]["redriven_at"] is not None
    assert _ok(http.get(f"/deadletters/{listed['id']}"))["redrivable"] is False


def test_pages_and_the_typed_client_read_the_same_list(http: httpx.Client) -> None:
    ids = [
        _ok(http.post(f"/entities/Parcel/p-{i}/signals/ship", json={}), 202)["command_id"]
        for i in range(3)
    ]
    for cid in ids:
        _outcome(http, cid)
    first = _ok(http.get("/deadletters", params={"limit": 2}))
    assert len(first["dead_letters"]) == 2 and first["next_after"] is not None
    rest = _ok(http.get("/deadletters", params={"limit": 2, "after": first["next_after"]}))
    assert len(rest["dead_letters"]) == 1 and rest["next_after"] is None

    with EntityflowClient(str(http.base_url)) as client:
        items, after = client.dead_letters(limit=2)
        assert items == first["dead_letters"] and after == first["next_after"]
        one = client.dead_letter(items[0]["id"])
        assert one["command_id"] in ids
        client.redrive(items[0]["id"])  # still crashing: parked again, as a new dead letter
        with pytest.raises(RejectedError) as refused:
            client.redrive(items[0]["id"])
        assert refused.value.error == "already_redriven"
    deadline = time.monotonic() + 20
    while len(_ok(http.get("/deadletters"))["dead_letters"]) < 4:
        assert time.monotonic() < deadline, "the re-driven command was not parked again"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/deadletters/0-999", 404),
        ("POST", "/deadletters/0-999/redrive", 404),
        ("GET", "/deadletters/nope", 422),
        ("POST", "/deadletters/0-1-2/redrive", 422),
        ("GET", "/deadletters/%3Cscript%3E", 422),
        ("GET", "/deadletters?after=x", 422),
        ("GET", "/deadletters?limit=0", 422),
        ("GET", "/deadletters?limit=100000", 422),
        ("GET", "/deadletters/99999999999999999999999-1", 422),
    ],
)
def test_bad_ids_and_parameters_are_4xx_with_a_message(
    http: httpx.Client, method: str, path: str, status: int
) -> None:
    r = http.request(method, path)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["message"] and body["hint"]


def test_the_routes_are_documented_with_their_errors(http: httpx.Client) -> None:
    paths = _ok(http.get("/openapi.json"))["paths"]
    assert set(paths["/deadletters"]["get"]["responses"]) >= {"200", "422", "503"}
    assert set(paths["/deadletters/{dead_letter_id}"]["get"]["responses"]) >= {"200", "404"}
    redrive = paths["/deadletters/{dead_letter_id}/redrive"]["post"]["responses"]
    assert set(redrive) >= {"202", "404", "409", "422", "503"}
