"""The web console over real HTTP (uvicorn): the page and its assets, the JSON routes it
adds (catalog, timeline), every path its JavaScript calls present in /openapi.json, and
its own modules run under node against the server, escaping hostile ids and payloads.

One stack for the module: the in-memory mailbox and SQLite (the console reads the same
routes whichever broker and store are behind them; those are tested elsewhere on both).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from actors import InMemoryMailbox
from api.routes.console import ASSETS, CONSOLE, CSP
from api.settings import Settings
from tests.api_tests.conftest import Stack, running_stack
from tests.api_tests.test_routes_repairs import failed_payout

NODE = shutil.which("node")
JS = sorted((ASSETS / "js").glob("*.js"))
HOSTILE = "<script>alert('x')</script><img src=x onerror=alert(1)>&amp;\"'`"
HOSTILE_ID = "x\"'><svg><i>&amp;"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    url = f"sqlite:///{tmp_path_factory.mktemp('console') / 'store.db'}"
    settings = Settings(update_timeout=20)
    with running_stack("memory-sqlite", url, InMemoryMailbox(partitions=4), settings) as s:
        yield s


def _ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def paths_js() -> tuple[dict[str, str], list[str]]:
    """PATHS and OPTIONAL as paths.js declares them (their bodies are plain JSON)."""
    source = (ASSETS / "js" / "paths.js").read_text()
    paths = re.search(r"PATHS = Object\.freeze\((\{.*?\})\);", source, re.DOTALL)
    optional = re.search(r"OPTIONAL = Object\.freeze\((\[.*?\])\);", source, re.DOTALL)
    assert paths is not None and optional is not None, "paths.js lost its shape"
    return json.loads(paths.group(1)), json.loads(optional.group(1))


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


# -- the page and its assets ---------------------------------------------------------------


def test_the_console_page_is_served_with_a_strict_policy(stack: Stack) -> None:
    for path in ("/console", "/console/"):
        r = stack.http.get(path)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert r.headers["content-security-policy"] == CSP
        assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
        assert r.text == (CONSOLE / "index.html").read_text()
        assert '<script type="module" src="/console/assets/js/app.js"></script>' in r.text


def test_every_asset_loads_with_its_content_type(stack: Stack) -> None:
    page = stack.http.get("/console").text
    linked = re.findall(r'(?:src|href)="(/console/assets/[^"]+)"', page)
    assert sorted(linked) == ["/console/assets/console.css", "/console/assets/js/app.js"]
    imported = {
        f"/console/assets/js/{name}"
        for path in JS
        for name in re.findall(r'from "\./([\w.]+\.js)"', path.read_text())
    }
    assert imported == {f"/console/assets/js/{p.name}" for p in JS} - {"/console/assets/js/app.js"}
    for url in {*linked, *imported}:
        r = stack.http.get(url)
        assert r.status_code == 200, url
        kind = "text/css" if url.endswith(".css") else "text/javascript"
        assert r.headers["content-type"].split(";")[0] == kind, url
        assert r.content == (ASSETS / url.removeprefix("/console/assets/")).read_bytes()
    assert stack.http.get("/console/assets/js/nothing.js").status_code == 404
    assert stack.http.get("/console/assets/../index.html").status_code == 404


def test_the_console_stays_out_of_the_document_and_its_routes_are_in_it(stack: Stack) -> None:
    document = _ok(stack.http.get("/openapi.json"))
    paths = document["paths"]
    assert not [p for p in paths if p.startswith("/console")]
    catalog = paths["/catalog"]["get"]
    assert catalog["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Catalog"
    }
    for kind in ("Order", "Transfer", "Receipt"):
        timeline = paths[f"/workflows/{kind}/{{workflow_id}}/timeline"]["get"]
        ref = timeline["responses"]["200"]["content"]["application/json"]["schema"]
        assert ref == {"$ref": "#/components/schemas/Timeline"}
        assert {"404", "422", "503"} <= set(timeline["responses"])
    schemas = document["components"]["schemas"]
    assert {"Timeline", "TimelineEntry", "TimelineAttempt", "Catalog"} <= set(schemas)


def test_every_path_the_console_calls_is_in_the_document(stack: Stack) -> None:
    """The console cannot drift from the API: each template of paths.js, for every type
    of the catalog, is an operation of /openapi.json (optional ones: when present, all)."""
    declared, optional = paths_js()
    catalog = _ok(stack.http.get("/catalog"))
    document = {_shape(p) for p in _ok(stack.http.get("/openapi.json"))["paths"]}
    expanded: dict[str, set[str]] = {}
    for name, template in declared.items():
        found: set[str] = set()
        if template.startswith("/entities/{type}"):
            found = {template.replace("{type}", e["type"]) for e in catalog["entities"]}
        elif "{signal}" in template:
            found = {
                template.replace("{type}", w["type"]).replace("{signal}", s)
                for w in catalog["workflows"]
                for s in w["signals"]
            }
        elif template.startswith("/workflows/{type}"):
            found = {template.replace("{type}", w["type"]) for w in catalog["workflows"]}
        else:
            found = {template}
        assert found, f"{name}: {template} names no route of this domain"
        expanded[name] = {_shape(p) for p in found}
    required = {n: p for n, p in expanded.items() if n not in optional}
    missing = {n: sorted(p - document) for n, p in required.items() if p - document}
    assert not missing, f"the console calls routes the API does not have: {missing}"
    assert set(optional) == {"deadLetters", "deadLetterRedrive"}
    present = [n for n in optional if expanded[n] <= document]
    assert present in ([], optional), f"only some dead-letter routes exist: {present}"


def test_the_javascript_builds_no_path_outside_paths_js() -> None:
    literal = re.compile(r"""["'`]/(?:entities|workflows|catalog|approvals|deadletters)\b""")
    strays = {p.name: literal.findall(p.read_text()) for p in JS if p.name != "paths.js"}
    assert {name: found for name, found in strays.items() if found} == {}
    assert any(literal.findall((ASSETS / "js" / "paths.js").read_text()))


@pytest.mark.skipif(NODE is None, reason="node is not installed")
@pytest.mark.parametrize("path", JS, ids=lambda p: p.name)
def test_the_javascript_parses(path: Path) -> None:
    done = subprocess.run(
        [str(NODE), "--check", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


# -- the JSON routes it adds ---------------------------------------------------------------


def test_the_catalog_lists_the_domain(stack: Stack) -> None:
    catalog = _ok(stack.http.get("/catalog"))
    entities = {e["type"]: e for e in catalog["entities"]}
    assert list(entities) == sorted(entities)
    assert {"Account", "Cart", "InventoryItem", "Gadget"} <= set(entities)
    gadget = entities["Gadget"]
    assert gadget["doc"] == "A counter with notes."
    assert {c["name"] for c in gadget["commands"]} == {"note", "bump", "explode"}
    assert {"name": "bump", "doc": "Add to the count; returns the new count."} in gadget["commands"]
    assert {q["name"] for q in gadget["queries"]} == {"count", "has_notes", "sneaky"}
    workflows = {w["type"]: w for w in catalog["workflows"]}
    assert workflows["Transfer"]["signals"] == ["approve", "note", "nudge"]
    assert workflows["Transfer"]["queries"] == ["memo_value", "stage"]
    assert workflows["Order"]["description"].startswith("Reserve stock")


def _compensated_order(stack: Stack) -> str:
    """An order whose cart is empty: reserved, charged, refused at checkout, undone."""
    account, sku, cart = stack.new_id("acct"), stack.new_id("sku"), stack.new_id("cart")
    _ok(stack.http.post(f"/entities/Account/{account}/updates/open", json={"owner": "Ada"}))
    _ok(stack.http.post(f"/entities/Account/{account}/updates/deposit", json={"amount": "50"}))
    _ok(stack.http.post(f"/entities/InventoryItem/{sku}/updates/restock", json={"quantity": 5}))
    body = {
        "input": {
            "account_id": account,
            "cart_id": cart,
            "lines": [{"sku": sku, "quantity": 2}],
            "amount": "10",
        }
    }
    wid: str = _ok(stack.http.post("/workflows/Order", json=body), 202)["workflow_id"]
    status = _ok(stack.http.get(f"/workflows/Order/{wid}", params={"wait": "20"}))
    assert status["status"] == "compensated", status
    return wid


def test_the_timeline_of_a_compensated_order(stack: Stack) -> None:
    wid = _compensated_order(stack)
    timeline = _ok(stack.http.get(f"/workflows/Order/{wid}/timeline"))
    status = _ok(stack.http.get(f"/workflows/Order/{wid}"))
    steps = [e for e in timeline["entries"] if e["kind"] == "step"]
    undone = [e for e in timeline["entries"] if e["kind"] == "compensation"]
    assert [e["detail"]["command"] for e in steps] == ["reserve", "withdraw", "checkout"]
    assert [e["status"] for e in steps] == ["applied", "applied", "rejected"]
    assert "empty" in steps[-1]["error"]
    # compensations ran newest first: the charge is refunded, then the stock released
    assert [e["detail"]["command"] for e in undone] == ["deposit", "release"]
    assert [e["detail"]["address"] for e in undone] == [
        steps[1]["detail"]["address"],
        steps[0]["detail"]["address"],
    ]
    assert [e["status"] for e in undone] == ["applied", "applied"]
    kinds = [e["kind"] for e in timeline["entries"]]
    assert kinds[0] == "workflow" and kinds[-1] == "workflow"
    assert timeline["entries"][-1]["id"] == "compensated"
    assert kinds.index("compensation") > kinds.index("workflow", 1)  # after "compensating"
    for entry in timeline["entries"]:
        assert entry["end"] is not None and entry["duration_seconds"] >= 0
        for attempt in entry["attempts"]:
            assert attempt["ended_at"] >= attempt["started_at"]
    starts = [e["start"] for e in timeline["entries"]]
    assert starts == sorted(starts)
    # it agrees with the status route, and carries the memo a replay rebuilt
    assert timeline["status"] == status["status"] == "compensated"
    assert timeline["compensations"] == status["compensations"]
    assert timeline["compensations_pending"] == status["compensations_pending"] == []
    assert timeline["version"] == status["version"]
    assert timeline["memo"] == {"stage": "confirming"}
    assert timeline["waiting_on"] == []


def test_the_timeline_of_a_running_execution_says_what_it_waits_on(stack: Stack) -> None:
    source, target = stack.new_id("acct"), stack.new_id("acct")
    for account in (source, target):
        _ok(stack.http.post(f"/entities/Account/{account}/updates/open", json={"owner": "A"}))
    _ok(stack.http.post(f"/entities/Account/{source}/updates/deposit", json={"amount": "50"}))
    body = {"input": {"source": source, "target": target, "amount": "5"}}
    wid = _ok(stack.http.post("/workflows/Transfer", json=body), 202)["workflow_id"]
    deadline = time.monotonic() + 20
    while True:
        r = stack.http.get(f"/workflows/Transfer/{wid}/timeline")  # 404 until it started
        timeline = r.json()
        if r.status_code == 200 and timeline["memo"].get("stage") == "waiting":
            break
        assert time.monotonic() < deadline, timeline
        time.sleep(0.02)
    assert timeline["status"] == "running"
    assert timeline["ended_at"] is None
    assert timeline["compensations_pending"] == [f"#1 Account/{source}.deposit"]
    assert [e["kind"] for e in timeline["entries"]] == ["workflow", "step"]
    url = f"/workflows/Transfer/{wid}/signals/approve"
    _ok(stack.http.post(url, json={"by": HOSTILE[:50]}), 202)
    _ok(stack.http.get(f"/workflows/Transfer/{wid}", params={"wait": "20"}))
    timeline = _ok(stack.http.get(f"/workflows/Transfer/{wid}/timeline"))
    signal = next(e for e in timeline["entries"] if e["kind"] == "signal")
    assert (signal["name"], signal["detail"]) == ("approve", {"payload": {"by": HOSTILE[:50]}})
    assert timeline["status"] == "completed"
    assert timeline["memo"]["approved_by"] == HOSTILE[:50]


def test_timeline_errors_are_clear(stack: Stack) -> None:
    r = stack.http.get("/workflows/Nope/x/timeline")
    assert r.status_code == 404
    assert "Order" in r.json()["message"] and "Nope" in r.json()["message"]
    r = stack.http.get("/workflows/Order/never-started/timeline")
    assert r.status_code == 404
    assert "has not started" in r.json()["message"]
    r = stack.http.get(f"/workflows/Order/{'x' * 101}/timeline")
    assert r.status_code == 422
    assert r.json()["error"]


# -- the console's own code against the server ---------------------------------------------


class Markup(HTMLParser):
    """The tags and attributes a fragment holds, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(fragment: str) -> Markup:
    markup = Markup()
    markup.feed(fragment)
    markup.close()
    return markup


ALLOWED_TAGS = {
    "a", "button", "code", "dd", "details", "div", "dl", "dt", "form", "h2", "h3", "input",
    "label", "li", "ol", "option", "p", "pre", "section", "select", "span", "strong",
    "summary", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_the_console_modules_render_what_the_api_answers_and_escape_it(stack: Stack) -> None:
    """api.js and views.js, run by node against this server: real pages, paged history,
    time travel, a timeline, the dead letters' 404, and hostile strings left inert."""
    entity = HOSTILE_ID
    for text in (HOSTILE[:100], "second note"):
        r = stack.http.post(f"/entities/Gadget/{entity}/updates/note", json={"text": text})
        _ok(r)
    wid = _compensated_order(stack)
    job = {
        "type": "Gadget",
        "id": entity,
        "workflowType": "Order",
        "workflowId": wid,
        "hostile": HOSTILE,
    }
    done = subprocess.run(
        [
            str(NODE),
            str(Path(__file__).with_name("console_client.mjs")),
            ASSETS.as_uri() + "/",
            stack.url,
            json.dumps(job),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert "Gadget" in out["entityTypes"]
    assert out["versions"] == [1, 2, 1, None]  # version 1 of 2; history paged one by one
    assert out["listed"] == 1
    assert out["timelineStatus"] == "compensated"
    assert out["deadLettersAvailable"] is True  # this server has the dead-letter routes
    assert "<h2>Dead letters</h2>" in out["deadLetters"]
    assert "not available on this server" not in out["deadLetters"]
    assert out["missing"]["status"] == 404
    assert "has not started" in out["missing"]["html"]
    assert out["filled"] == "/entities/A/a%2Fb%3Fc%23d"
    assert f"GET /entities/Gadget/{_quote(entity)}?version=1" in out["calls"]
    assert "GET /deadletters?limit=50" in out["calls"]

    pages = ("entity", "picker", "timeline", "list", "approvals", "deadLetters", "fakeDeadLetters")
    for page in pages:
        markup = parse(out[page])
        assert markup.tags <= ALLOWED_TAGS, (page, markup.tags - ALLOWED_TAGS)
        assert not [a for a in markup.attributes if a.startswith("on")], page
        assert "javascript:" not in out[page].lower(), page
    entity_page = parse(out["entity"])
    shown = json.dumps(HOSTILE[:100], ensure_ascii=False)  # the payload, pretty-printed
    assert shown in "".join(entity_page.text)  # shown as text, not markup
    assert entity in "".join(entity_page.text)
    assert "&lt;script&gt;" in out["entity"] and "<script" not in out["entity"]
    assert out["fakeCalls"] == [
        "GET /deadletters?limit=50",
        f"POST /deadletters/{_quote(HOSTILE)}/redrive",
    ]
    assert out["redriven"] is None  # 202, no body
    assert "Re-drive" in out["fakeDeadLetters"]
    assert "after=n%3C2%3E" in out["fakeDeadLetters"]  # the next page, encoded
    assert entity in "".join(parse(out["fakeDeadLetters"]).text)
    assert HOSTILE in "".join(parse(out["fakeDeadLetters"]).text)
    assert f'value="{_escaped(entity)}"' in out["picker"]
    for section in ("reserve", "withdraw", "checkout", "deposit", "release", "compensated"):
        assert section in out["timeline"]
    timeline = _ok(stack.http.get(f"/workflows/Order/{wid}/timeline"))
    account = next(e for e in timeline["entries"] if e["name"].endswith(".withdraw"))
    assert f'href="#/entities/{account["detail"]["address"]}"' in out["timeline"]


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="!'()*-._~")


def _escaped(value: str) -> str:
    table = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "`": "&#96;"}
    return "".join(table.get(c, c) for c in value)


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_the_console_app_routes_its_pages_and_decides_an_approval(stack: Stack) -> None:
    """app.js itself under node (a stub DOM): each hash route renders its page from the
    server, and the approve button's handler sends the decision and re-renders."""
    account = stack.new_id("acct")
    _ok(stack.http.post(f"/entities/Account/{account}/updates/open", json={"owner": "Ada"}))
    _ok(stack.http.post(f"/entities/Account/{account}/updates/deposit", json={"amount": "1"}))
    body = {"input": {"account_id": account, "amount": "5.00"}}
    refund = _ok(stack.http.post("/workflows/Refund", json=body), 202)["workflow_id"]
    deadline = time.monotonic() + 20
    while not any(
        a["workflow_id"] == refund for a in _ok(stack.http.get("/approvals"))["approvals"]
    ):
        assert time.monotonic() < deadline, "the refund never asked for its approval"
        time.sleep(0.02)
    order = _compensated_order(stack)
    payout, index, _ = failed_payout(stack)
    job = {
        "hashes": {
            "workflows": "#/workflows?type=Order&status=compensated",
            "timeline": f"#/workflows/Order/{order}",
            "entity": f"#/entities/Account/{account}",
            "version": f"#/entities/Account/{account}?version=1",
            "approvals": "#/approvals",
            "deadletters": "#/deadletters",
            "unknown": "#/nowhere",
            "missing": "#/entities/Account/no-such-account",
        },
        "decide": {"type": "Refund", "id": refund, "signal": "manager"},
        "repair": {
            "hash": f"#/workflows/Payout/{payout}",
            "type": "Payout",
            "id": payout,
            "index": index,
            "reason": "paid back by hand",
        },
    }
    done = subprocess.run(
        [
            str(NODE),
            str(Path(__file__).with_name("console_app.mjs")),
            ASSETS.as_uri() + "/",
            stack.url,
            json.dumps(job),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    pages, calls = out["pages"], out["calls"]
    assert "<h2>Workflows</h2>" in pages["start"]  # the default page
    assert "GET /catalog" in calls and calls.count("GET /catalog") == 1  # read once
    assert "GET /workflows?type=Order&status=compensated&limit=50" in calls
    assert order in pages["workflows"]
    assert "compensated" in pages["timeline"] and "deposit" in pages["timeline"]
    assert f"GET /workflows/Order/{order}/timeline" in calls
    assert "version 2 of 2" in pages["entity"] and "version 1 of 2" in pages["version"]
    assert refund in pages["approvals"] and "Approve" in pages["approvals"]
    assert "<h2>Dead letters</h2>" in pages["deadletters"]  # the routes exist here
    assert "not available on this server" not in pages["deadletters"]
    assert "no page nowhere" in pages["unknown"]
    assert 'class="error"' in pages["missing"] and "HTTP 404" in pages["missing"]
    assert 'data-form="entity"' in pages["missing"]  # the picker stays, to try another id
    assert f"POST /workflows/Refund/{refund}/signals/manager" in calls
    assert "decideError" not in pages
    assert refund not in pages["afterDecide"]  # decided: no longer pending
    status = _ok(stack.http.get(f"/workflows/Refund/{refund}", params={"wait": "20"}))
    assert status["status"] == "completed", status
    assert status["approvals"][0]["decided_by"] == "manager"
    assert status["approvals"][0]["comment"] == "fine <b>by</b> me"
    # the failed payout's timeline offers the repair, and its form skips the compensation
    assert 'data-form="repair"' in pages["failed"] and "Skip" in pages["failed"]
    assert f"POST /workflows/Payout/{payout}/compensations/{index}/skip" in calls
    assert "repairError" not in pages
    assert 'data-form="repair"' not in pages["afterRepair"]
    repaired = _ok(stack.http.get(f"/workflows/Payout/{payout}", params={"wait": "20"}))
    assert repaired["status"] == "compensated", repaired
    assert repaired["compensations"][0]["error"] == "skipped by an operator: paid back by hand"
