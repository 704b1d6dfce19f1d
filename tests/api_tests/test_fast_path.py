"""The command fast path serves plain command requests and leaves the rest to FastAPI.

Both paths must answer the same: the fast path only skips FastAPI's per-request work.
A spy on the FastAPI router shows which path answered.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.api_tests.conftest import Stack, StackFactory


class _RouterSpy:
    """Stands in for the app's router: notes each path, then lets the router answer."""

    def __init__(self, router: Any, seen: list[str]) -> None:
        self._router = router
        self._seen = seen

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self._seen.append(scope["path"])
        await self._router(scope, receive, send)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._router, name)


@pytest.fixture
def spied(make_stack: StackFactory) -> Iterator[tuple[Stack, list[str]]]:
    with make_stack("memory-sqlite") as stack:
        seen: list[str] = []
        stack.app.router = _RouterSpy(stack.app.router, seen)
        stack.app.middleware_stack = None  # rebuilt on the next request, around the spy
        assert stack.http.get("/healthz").status_code == 200
        assert seen == ["/healthz"]  # the spy sees what reaches the router
        seen.clear()
        yield stack, seen


def test_plain_commands_skip_fastapi_and_answer_as_documented(
    spied: tuple[Stack, list[str]],
) -> None:
    stack, seen = spied
    base = f"/entities/Account/{stack.new_id('acct')}"
    opened = stack.http.post(f"{base}/updates/open", json={"owner": "Ada"})
    assert opened.status_code == 200, opened.text
    assert opened.json()["version"] == 1
    deposited = stack.http.post(f"{base}/updates/deposit?timeout=5", json={"amount": "10"})
    assert deposited.json()["result"] == "10"
    signalled = stack.http.post(f"{base}/signals/deposit", json={"amount": "1"})
    assert signalled.status_code == 202
    refused = stack.http.post(f"{base}/updates/withdraw", json={"amount": "100"})
    assert refused.status_code == 409 and "insufficient funds" in refused.json()["message"]
    invalid = stack.http.post(f"{base}/updates/deposit", json={"amount": "-1"})
    assert invalid.status_code == 422
    keyed = stack.http.post(
        f"{base}/updates/deposit", json={"amount": "2"}, headers={"Idempotency-Key": "k-1"}
    )
    again = stack.http.post(
        f"{base}/updates/deposit", json={"amount": "2"}, headers={"Idempotency-Key": "k-1"}
    )
    assert keyed.json() == again.json() and again.headers["Idempotency-Key"] == "k-1"
    assert not [p for p in seen if "/entities/" in p], seen  # none reached the router
    metrics = stack.http.get("/metrics").text
    assert 'route="/entities/Account/{entity_id}/updates/deposit"' in metrics


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/entities/Account/a%20b/updates/deposit", {}, 422),  # an id that needs validating
        ("/entities/Account/x/updates/deposit?timeout=0", {}, 422),  # a bad query value
        # FastAPI ignores a parameter it does not know; the account is not open: 409.
        ("/entities/Account/x/updates/deposit?wait=1", {}, 409),
        ("/entities/Account/x/signals/deposit?timeout=1", {}, 202),  # timeout on a signal
        ("/entities/Account/x/updates/deposit", {"Idempotency-Key": "bad key"}, 422),
        ("/entities/Nope/x/updates/deposit", {}, 404),  # unknown type
        ("/entities/Account/x/updates/nope", {}, 404),  # unknown command
    ],
)
def test_anything_unusual_goes_to_fastapi(
    spied: tuple[Stack, list[str]], path: str, headers: dict[str, str], status: int
) -> None:
    stack, seen = spied
    response = stack.http.post(path, json={"amount": "1"}, headers=headers)
    assert seen == [path.split("?", maxsplit=1)[0].replace("%20", " ")]
    assert response.status_code == status, response.text
