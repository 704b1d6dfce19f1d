"""Read routes over real HTTP: state, time travel, queries, paged history."""

from __future__ import annotations

import pytest

from tests.api_tests.conftest import Stack


def _account_with_history(stack: Stack, deposits: int = 5) -> str:
    account = stack.new_id("acct")
    base = f"/entities/Account/{account}/updates"
    assert stack.http.post(f"{base}/open", json={"owner": "Ada"}).status_code == 200
    for i in range(1, deposits + 1):
        r = stack.http.post(f"{base}/deposit", json={"amount": str(i)})
        assert r.status_code == 200, r.text
    return account


def test_state_now_and_at_every_past_version(stack: Stack) -> None:
    account = _account_with_history(stack, deposits=4)
    now = stack.http.get(f"/entities/Account/{account}").json()
    assert now == {"state": {"status": "open", "owner": "Ada", "balance": "10"}, "version": 5}
    expected = {1: "0", 2: "1", 3: "3", 4: "6", 5: "10"}
    for version, balance in expected.items():
        r = stack.http.get(f"/entities/Account/{account}", params={"version": version})
        assert r.status_code == 200, r.text
        assert r.json()["version"] == version
        assert r.json()["state"]["balance"] == balance


def test_state_follows_new_commands(stack: Stack) -> None:
    """The API caches entities; a read after an update must still see the update."""
    gadget = stack.new_id("g")
    for expected in range(1, 6):
        assert stack.http.post(f"/entities/Gadget/{gadget}/updates/bump").status_code == 200
        assert stack.http.get(f"/entities/Gadget/{gadget}").json()["state"]["count"] == expected
        q = stack.http.get(f"/entities/Gadget/{gadget}/queries/count").json()
        assert q == {"result": expected, "version": expected}


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/entities/Account/nobody", 404, "entity_not_found"),
        ("/entities/Account/nobody/queries/balance", 404, "entity_not_found"),
        ("/entities/Account/nobody/events", 404, "entity_not_found"),
        ("/entities/Ghost/x", 404, "unknown_type_or_command"),
        ("/entities/Ghost/x/events", 404, "unknown_type_or_command"),
        ("/entities/Ghost/x/queries/balance", 404, "unknown_type_or_command"),
        ("/entities/Account/x/queries/nothing", 404, "unknown_type_or_command"),
        ("/entities/Account/x/queries/deposit", 404, "unknown_type_or_command"),
        ("/entities/Account/x?version=0", 422, "invalid_request"),
        ("/entities/Account/x?version=abc", 422, "invalid_request"),
        ("/entities/Account/x/events?limit=0", 422, "invalid_request"),
        ("/entities/Account/x/events?limit=1001", 422, "invalid_request"),
        ("/entities/Account/x/events?after=-1", 422, "invalid_request"),
        ("/nowhere", 404, "not_found"),
    ],
)
def test_read_errors(stack: Stack, path: str, status: int, error: str) -> None:
    r = stack.http.get(path)
    assert r.status_code == status, r.text
    assert r.json()["error"] == error
    assert r.json()["hint"]


def test_version_past_the_end_is_404(stack: Stack) -> None:
    account = _account_with_history(stack, deposits=1)
    r = stack.http.get(f"/entities/Account/{account}", params={"version": 3})
    assert r.status_code == 404
    assert r.json()["message"] == f"Account/{account} has no version 3: its current version is 2"


def test_queries_take_typed_arguments_and_read_the_past(stack: Stack) -> None:
    account = _account_with_history(stack, deposits=3)  # balance 6 at version 4
    base = f"/entities/Account/{account}/queries"
    assert stack.http.get(f"{base}/balance").json() == {"result": "6", "version": 4}
    assert stack.http.get(f"{base}/balance?version=2").json() == {"result": "1", "version": 2}
    r = stack.http.get(f"{base}/can_withdraw", params={"amount": "5.50"})
    assert r.json() == {"result": True, "version": 4}
    r = stack.http.get(f"{base}/can_withdraw", params={"amount": "5.50", "version": 3})
    assert r.json() == {"result": False, "version": 3}


@pytest.mark.parametrize(
    ("params", "kind", "loc"),
    [
        ({}, "missing", ["query", "amount"]),
        ({"amount": "-1"}, "greater_than", ["query", "amount"]),
        ({"amount": "x"}, "decimal_parsing", ["query", "amount"]),
        ({"amount": "1", "other": "2"}, "extra_forbidden", ["query", "other"]),
    ],
)
def test_invalid_query_arguments_are_422(
    stack: Stack, params: dict[str, str], kind: str, loc: list[str]
) -> None:
    account = _account_with_history(stack, deposits=1)
    r = stack.http.get(f"/entities/Account/{account}/queries/can_withdraw", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_arguments"
    assert r.json()["details"][0]["type"] == kind
    assert r.json()["details"][0]["loc"] == loc


def test_list_arguments_are_repeated_query_parameters(stack: Stack) -> None:
    gadget = stack.new_id("g")
    for text in ("red", "blue"):
        r = stack.http.post(f"/entities/Gadget/{gadget}/updates/note", json={"text": text})
        assert r.status_code == 200
    r = stack.http.get(
        f"/entities/Gadget/{gadget}/queries/has_notes",
        params=[("texts", "blue"), ("texts", "green"), ("texts", "red")],
    )
    assert r.json() == {"result": [True, False, True], "version": 2}


def test_a_query_that_changes_its_state_changes_only_its_copy(stack: Stack) -> None:
    gadget = stack.new_id("g")
    assert stack.http.post(f"/entities/Gadget/{gadget}/updates/bump").status_code == 200
    for _ in range(3):
        r = stack.http.get(f"/entities/Gadget/{gadget}/queries/sneaky")
        assert r.status_code == 200
        assert r.json() == {"result": 2, "version": 1}  # the cached state stays at 1
    assert stack.http.get(f"/entities/Gadget/{gadget}").json()["state"]["count"] == 1


def test_events_are_paged_oldest_first(stack: Stack) -> None:
    account = _account_with_history(stack, deposits=6)  # 7 events
    seen: list[int] = []
    after = 0
    pages = 0
    while True:
        r = stack.http.get(
            f"/entities/Account/{account}/events", params={"after": after, "limit": 3}
        )
        assert r.status_code == 200, r.text
        page = r.json()
        pages += 1
        seen += [e["version"] for e in page["events"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == [1, 2, 3, 4, 5, 6, 7]
    assert pages == 3
    first = stack.http.get(f"/entities/Account/{account}/events?limit=1").json()["events"][0]
    assert first["type"] == "AccountOpened"
    assert first["data"] == {"owner": "Ada"}
    assert first["schema_version"] == 1
    assert len(first["command_id"]) == 32
    beyond = stack.http.get(f"/entities/Account/{account}/events?after=7").json()
    assert beyond == {"events": [], "next_after": None}
