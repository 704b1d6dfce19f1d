"""Command routes over real HTTP: signals, updates, outcomes, and every error they answer."""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse

import httpx
import pytest

from api.app import AppParts, create_app
from api.server import ServerThread
from tests.api_tests.conftest import Stack, StackFactory


def _open(stack: Stack, owner: str = "Ada") -> str:
    account = stack.new_id("acct")
    r = stack.http.post(f"/entities/Account/{account}/updates/open", json={"owner": owner})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1
    return account


def test_update_returns_result_and_version(stack: Stack) -> None:
    account = _open(stack)
    r = stack.http.post(f"/entities/Account/{account}/updates/deposit", json={"amount": "25.50"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["result"] == "25.50"
    assert body["version"] == 2
    outcome = stack.http.get(f"/commands/{body['command_id']}").json()
    assert outcome["status"] == "applied"
    assert outcome["version"] == 2
    assert outcome["result"] == "25.50"


def test_signal_is_accepted_then_applied(stack: Stack) -> None:
    account = _open(stack)
    r = stack.http.post(f"/entities/Account/{account}/signals/deposit", json={"amount": 7})
    assert r.status_code == 202, r.text
    assert set(r.json()) == {"command_id"}
    outcome = stack.wait_outcome(r.json()["command_id"])
    assert {k: v for k, v in outcome.items() if k != "recorded_at"} == {
        "command_id": r.json()["command_id"],
        "status": "applied",
        "address": f"Account/{account}",
        "command": "deposit",
        "result": "7",
        "version": 2,
        "error": None,
        "code": None,
    }
    assert outcome["recorded_at"].endswith("Z")
    assert stack.http.get(f"/entities/Account/{account}").json()["state"]["balance"] == "7"


def test_both_routes_accept_signal_and_update_handlers(stack: Stack) -> None:
    gadget = stack.new_id("g")
    r = stack.http.post(f"/entities/Gadget/{gadget}/updates/note", json={"text": "hello"})
    assert r.status_code == 200, r.text
    assert r.json()["result"] is None
    assert r.json()["version"] == 1
    r = stack.http.post(f"/entities/Gadget/{gadget}/signals/bump", json={"by": 3})
    assert r.status_code == 202
    assert stack.wait_outcome(r.json()["command_id"])["result"] == 3


def test_commands_without_arguments_take_an_empty_or_missing_body(stack: Stack) -> None:
    gadget = stack.new_id("g")
    r = stack.http.post(f"/entities/Gadget/{gadget}/updates/bump")
    assert r.status_code == 200, r.text
    assert r.json()["result"] == 1
    r = stack.http.post(f"/entities/Gadget/{gadget}/updates/bump", json={})
    assert r.json()["result"] == 2


def test_rejection_is_409_and_changes_nothing(stack: Stack) -> None:
    account = _open(stack)
    r = stack.http.post(f"/entities/Account/{account}/updates/withdraw", json={"amount": "5"})
    assert r.status_code == 409
    body = r.json()
    assert body["error"] == "rejected"
    assert body["message"] == "insufficient funds: balance 0, asked 5"
    assert "nothing changed" in body["hint"]
    assert stack.http.get(f"/commands/{body['command_id']}").json()["status"] == "rejected"
    assert stack.http.get(f"/entities/Account/{account}").json()["version"] == 1


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/entities/Ghost/x/updates/open", "no entity type 'Ghost' is registered"),
        ("/entities/Ghost/x/signals/open", "no entity type 'Ghost' is registered"),
        ("/entities/Account/x/updates/teleport", "Account has no command named 'teleport'"),
        ("/entities/Account/x/signals/balance", "Account has no command named 'balance'"),
    ],
)
def test_unknown_type_or_command_is_404(stack: Stack, path: str, message: str) -> None:
    r = stack.http.post(path, json={})
    assert r.status_code == 404
    assert r.json()["error"] == "unknown_type_or_command"
    assert message in r.json()["message"]


@pytest.mark.parametrize(
    ("body", "field", "kind"),
    [
        (b'{"amount": "lots"}', "amount", "decimal_parsing"),
        (b'{"amount": -5}', "amount", "greater_than"),
        (b'{"amount": "1.001"}', "amount", "decimal_max_places"),
        (b"{}", "amount", "missing"),
        (b'{"amount": 1, "extra": true}', "extra", "extra_forbidden"),
        (b"[1, 2]", None, "model_type"),
        (b'{"amount": ', None, "json_invalid"),
        (b'"just a string"', None, "model_type"),
    ],
)
def test_invalid_arguments_are_422_with_details(
    stack: Stack, body: bytes, field: str | None, kind: str
) -> None:
    account = _open(stack)
    for mode in ("signals", "updates"):
        r = stack.http.post(
            f"/entities/Account/{account}/{mode}/deposit",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 422, r.text
        err = r.json()
        assert err["error"] == "invalid_arguments"
        assert err["message"].startswith("invalid arguments for Account.deposit")
        assert err["details"][0]["type"] == kind
        if field is not None:
            assert err["details"][0]["loc"] == ["body", field]
    assert stack.http.get(f"/entities/Account/{account}").json()["version"] == 1


def test_oversized_body_is_413_and_sends_nothing(make_stack: StackFactory) -> None:
    with make_stack(max_payload_bytes=2048) as s:
        huge = b'{"owner": "' + b"x" * 5000 + b'"}'
        r = s.http.post("/entities/Account/big/updates/open", content=huge)
        assert r.status_code == 413
        assert r.json()["error"] == "payload_too_large"
        assert s.http.get("/entities/Account/big").status_code == 404


@pytest.mark.parametrize("entity_id", [".", ".."])
def test_dot_ids_that_a_proxy_would_normalise_are_422(stack: Stack, entity_id: str) -> None:
    """Sent as is (http.client, unlike httpx, does not resolve dot segments)."""
    url = urllib.parse.urlsplit(stack.url)
    for mode in ("signals", "updates"):
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
        try:
            conn.request(
                "POST",
                f"/entities/Account/{entity_id}/{mode}/open",
                body=b'{"owner": "A"}',
                headers={"content-type": "application/json"},
            )
            response = conn.getresponse()
            body = json.loads(response.read())
        finally:
            conn.close()
        assert response.status == 422, body
        assert body["error"] == "invalid_arguments"
        assert "not . or .." in body["message"]


@pytest.mark.parametrize("entity_id", ["has space", "x" * 201, "tab%09here", "nul%00"])
def test_invalid_entity_id_is_422(stack: Stack, entity_id: str) -> None:
    r = stack.http.post(f"/entities/Account/{entity_id}/updates/open", json={"owner": "A"})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_request"
    assert r.json()["details"][0]["loc"] == ["path", "entity_id"]


def test_a_crashing_handler_is_500_dead_lettered_and_changes_nothing(stack: Stack) -> None:
    gadget = stack.new_id("g")
    assert stack.http.post(f"/entities/Gadget/{gadget}/updates/bump").status_code == 200
    r = stack.http.post(f"/entities/Gadget/{gadget}/updates/explode")
    assert r.status_code == 500
    assert r.json()["error"] == "handler_crashed"
    assert "RuntimeError: boom" in r.json()["message"]
    outcome = stack.http.get(f"/commands/{r.json()['command_id']}").json()
    assert outcome["status"] == "dead_lettered"
    assert stack.http.get(f"/entities/Gadget/{gadget}").json()["version"] == 1


def test_unknown_command_id_is_404(stack: Stack) -> None:
    r = stack.http.get("/commands/never-sent-0001")
    assert r.status_code == 404
    assert r.json()["error"] == "unknown_command"
    assert r.json()["command_id"] == "never-sent-0001"


KINDS = [
    "memory-sqlite",
    pytest.param("kafka-postgres", marks=[pytest.mark.kafka, pytest.mark.postgres]),
]


@pytest.mark.parametrize("kind", KINDS)
def test_update_timeout_is_504_with_a_command_id_that_stays_valid(
    make_stack: StackFactory, kind: str
) -> None:
    with make_stack(kind, run_worker=False) as s:
        start = time.monotonic()
        r = s.http.post("/entities/Account/late/updates/open?timeout=0.3", json={"owner": "Li"})
        assert r.status_code == 504
        assert time.monotonic() - start < 5
        body = r.json()
        assert body["error"] == "update_timeout"
        command_id = body["command_id"]
        pending = s.http.get(f"/commands/{command_id}").json()
        assert pending["status"] == "pending"
        assert pending["address"] == "Account/late"
        # An accepted signal is pending too, until a worker processes it.
        sig = s.http.post("/entities/Account/late/signals/deposit", json={"amount": 1})
        assert s.http.get(f"/commands/{sig.json()['command_id']}").json()["status"] == "pending"
        deadline = time.monotonic() + 30
        while s.host.store.outcome(sig.json()["command_id"]) is None:
            s.host.worker.step()
            assert time.monotonic() < deadline
        assert s.wait_outcome(command_id)["status"] == "applied"
        assert s.wait_outcome(sig.json()["command_id"])["version"] == 2


@pytest.mark.parametrize("kind", KINDS)
def test_accepted_ids_stay_pending_across_an_api_restart(
    make_stack: StackFactory, kind: str
) -> None:
    with make_stack(kind, run_worker=False) as s:
        sig = s.http.post("/entities/Account/r1/signals/open", json={"owner": "Ro"})
        command_id = sig.json()["command_id"]
        # A second app over the same store (a restarted API node) knows the id.
        app = create_app(AppParts.from_host(s.host, s.app.state.ctx.settings))
        with ServerThread(app) as other:
            r = httpx.get(f"{other.url}/commands/{command_id}")
            assert r.json()["status"] == "pending"
            assert httpx.get(f"{other.url}/commands/nope").status_code == 404


@pytest.mark.parametrize(("timeout", "ok"), [("0", False), ("-1", False), ("abc", False)])
def test_timeout_parameter_is_validated(stack: Stack, timeout: str, ok: bool) -> None:
    r = stack.http.post(f"/entities/Gadget/t/updates/bump?timeout={timeout}")
    assert r.status_code == 422
    assert r.json()["details"][0]["loc"] == ["query", "timeout"]
