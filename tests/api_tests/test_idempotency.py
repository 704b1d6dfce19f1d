"""Idempotency-Key over real HTTP (IETF draft): replay, reuse, in flight, expiry."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest

from tests.api_tests.conftest import Stack, StackFactory

KINDS = [
    "memory-sqlite",
    pytest.param("kafka-postgres", marks=[pytest.mark.kafka, pytest.mark.postgres]),
]


def _key() -> dict[str, str]:
    return {"Idempotency-Key": f"key-{uuid.uuid4().hex}"}


def _open(stack: Stack) -> str:
    account = stack.new_id("acct")
    r = stack.http.post(f"/entities/Account/{account}/updates/open", json={"owner": "Ada"})
    assert r.status_code == 200
    return account


@pytest.mark.parametrize("mode", ["updates", "signals"])
def test_a_retry_gets_the_original_response_and_applies_once(stack: Stack, mode: str) -> None:
    account = _open(stack)
    key = _key()
    url = f"/entities/Account/{account}/{mode}/deposit"
    first = stack.http.post(url, json={"amount": "10"}, headers=key)
    assert first.status_code in (200, 202), first.text
    assert "idempotent-replayed" not in first.headers
    # The same body, spelled differently, is the same request.
    again = stack.http.post(url, content=b'{ "amount" :  "10" }', headers=key)
    assert again.status_code == first.status_code
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    command_id = first.json()["command_id"]
    stack.wait_outcome(command_id)
    state = stack.http.get(f"/entities/Account/{account}").json()
    assert state == {"state": {"status": "open", "owner": "Ada", "balance": "10"}, "version": 2}


def test_the_same_key_with_another_request_is_422(stack: Stack) -> None:
    account = _open(stack)
    key = _key()
    url = f"/entities/Account/{account}/updates/deposit"
    assert stack.http.post(url, json={"amount": "1"}, headers=key).status_code == 200
    other_body = stack.http.post(url, json={"amount": "2"}, headers=key)
    assert other_body.status_code == 422
    assert other_body.json()["error"] == "idempotency_key_reused"
    other_path = stack.http.post(
        f"/entities/Account/{account}/updates/withdraw", json={"amount": "1"}, headers=key
    )
    assert other_path.status_code == 422
    assert stack.http.get(f"/entities/Account/{account}").json()["version"] == 2


def test_a_rejection_is_the_final_response_for_its_key(stack: Stack) -> None:
    account = _open(stack)
    key = _key()
    url = f"/entities/Account/{account}/updates/withdraw"
    first = stack.http.post(url, json={"amount": "5"}, headers=key)
    assert first.status_code == 409
    deposit = f"/entities/Account/{account}/updates/deposit"
    assert stack.http.post(deposit, json={"amount": "50"}).status_code == 200
    again = stack.http.post(url, json={"amount": "5"}, headers=key)
    assert again.status_code == 409
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"


def test_invalid_arguments_do_not_use_up_the_key(stack: Stack) -> None:
    account = _open(stack)
    key = _key()
    url = f"/entities/Account/{account}/updates/deposit"
    assert stack.http.post(url, json={"amount": "abc"}, headers=key).status_code == 422
    fixed = stack.http.post(url, json={"amount": "3"}, headers=key)
    assert fixed.status_code == 200
    assert fixed.json()["result"] == "3"


@pytest.mark.parametrize("key", ["", "x" * 256, "with space", "tab\there"])
def test_malformed_keys_are_422(stack: Stack, key: str) -> None:
    r = stack.http.post(
        "/entities/Gadget/k/updates/bump",
        headers={"Idempotency-Key": key.encode().decode("latin-1")},
    )
    assert r.status_code == 422, r.text
    assert r.json()["details"][0]["loc"] in (["header", "Idempotency-Key"],)


@pytest.mark.parametrize("kind", KINDS)
def test_a_retry_while_in_flight_is_409_then_resumes_the_same_command(
    make_stack: StackFactory, kind: str
) -> None:
    with make_stack(kind, run_worker=False) as s:
        key = _key()
        url = "/entities/Gadget/inflight/updates/bump?timeout=1.5"
        results: list[httpx.Response] = []
        first = threading.Thread(
            target=lambda: results.append(s.http.post(url, json={"by": 5}, headers=key))
        )
        first.start()
        time.sleep(0.5)
        during = httpx.post(f"{s.url}{url}", json={"by": 5}, headers=key)
        first.join()
        assert during.status_code == 409
        assert during.json()["error"] == "idempotency_key_in_flight"
        (timed_out,) = results
        assert timed_out.status_code == 504
        command_id = timed_out.json()["command_id"]
        assert during.json()["command_id"] == command_id
        # The worker catches up; the retry re-sends the same command id and gets its result.
        stop = threading.Event()

        def work() -> None:
            while not stop.is_set():
                s.host.worker.step()

        worker = threading.Thread(target=work)
        worker.start()
        try:
            retry = s.http.post(url.replace("1.5", "30"), json={"by": 5}, headers=key)
        finally:
            stop.set()
            worker.join()
        assert retry.status_code == 200, retry.text
        assert retry.json() == {"result": 5, "version": 1, "command_id": command_id}
        assert s.http.get("/entities/Gadget/inflight").json()["state"]["count"] == 5


def test_keys_expire_after_the_configured_time(make_stack: StackFactory) -> None:
    with make_stack(idempotency_ttl_seconds=0.5) as s:
        key = _key()
        url = "/entities/Gadget/ttl/updates/bump"
        assert s.http.post(url, json={"by": 1}, headers=key).status_code == 200
        assert s.http.post(url, json={"by": 2}, headers=key).status_code == 422
        time.sleep(0.7)
        later = s.http.post(url, json={"by": 2}, headers=key)
        assert later.status_code == 200
        assert later.json()["result"] == 3
        assert "idempotent-replayed" not in later.headers
