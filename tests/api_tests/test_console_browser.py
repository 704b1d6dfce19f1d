"""The web console in a real browser: headless Chromium, driven by Selenium, opens the
console of a running stack (uvicorn, a worker, SQLite) and the test reads what the DOM
shows, the way a person would: an account stepped back through its versions, a
compensated order's undo steps newest first, a dead letter re-driven, and markup in ids
and payloads shown as text, never run.

The node tests (test_console.py) check the console's HTML strings; only a browser checks
the page itself: the router, the forms, the CSP, what gets clicked. Each step writes a
screenshot, under tmp_path and copied to ``test-artifacts/console/``, for a person to look
at. Chromium and its driver come from Debian (``deploy/local/browser.sh``); when they are
missing the test fails, as CI must, rather than skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from actors import InMemoryMailbox
from api.settings import Settings
from tests.api_tests.conftest import Stack, running_stack
from tests.api_tests.test_console import _compensated_order

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "console"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT = 30.0  # seconds: the CI machine has two loaded cores
PWN = "window.__pwned=1"
HOSTILE_ID = "g\"'><b>bold<i>&amp;"  # ids take no spaces nor slashes: tags, no attributes
HOSTILE_NOTE = f"<script>{PWN}</script><img src=x onerror={PWN}>"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'store.db'}"
    with running_stack(
        "memory-sqlite", url, InMemoryMailbox(partitions=4), Settings(update_timeout=20)
    ) as s:
        yield s


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """Headless Chromium through Debian's chromedriver, never a driver Selenium downloads."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run deploy/local/browser.sh", pytrace=False)
    os.environ["SE_OFFLINE"] = "1"  # Selenium Manager must not reach the network
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,1000")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shoot(
    browser: WebDriver, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], Path]]:
    """``shoot(name)`` writes a PNG of the page; all are copied to test-artifacts/console/,
    named after the test, so a run leaves one set per test (the last run's) to look at."""
    shots = tmp_path / "screenshots"
    shots.mkdir()
    test = request.node.name.removeprefix("test_")
    taken: list[Path] = []

    def take(name: str) -> Path:
        path = shots / f"{test}-{len(taken) + 1:02d}-{name}.png"
        assert browser.save_screenshot(str(path)), path
        taken.append(path)
        return path

    yield take
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob(f"{test}-*.png"):
        old.unlink()
    for path in taken:
        shutil.copy2(path, ARTIFACTS / path.name)
    print(f"\nconsole screenshots: {shots} (copied to {ARTIFACTS})")


def _ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def _wait(browser: WebDriver, css: str, text: str = "") -> WebElement:
    """The first element matching css whose text contains ``text``, once the page shows it."""

    def found(d: WebDriver) -> WebElement | bool:
        for el in d.find_elements(By.CSS_SELECTOR, css):
            try:
                if text in el.text:
                    return el
            except Exception:  # re-rendered under us (stale): look again
                return False
        return False

    element: WebElement = WebDriverWait(browser, WAIT).until(found, f"no {css!r} showing {text!r}")
    return element


def _open(browser: WebDriver, stack: Stack, fragment: str) -> None:
    browser.get(f"{stack.url}/console#{fragment}")


def _targets(browser: WebDriver, kind: str) -> list[tuple[str, str]]:
    """(address, command) of each timeline entry of a kind, in the order the page lists them."""
    found = []
    for entry in browser.find_elements(By.CSS_SELECTOR, f"ol.timeline li.entry.kind-{kind}"):
        label = entry.find_element(By.CSS_SELECTOR, ".label").text
        name = next(word for word in label.split() if "/" in word)  # Type/id.command
        address, _, command = name.rpartition(".")
        found.append((address, command))
    return found


def _pwned(browser: WebDriver) -> Any:
    return browser.execute_script("return window.__pwned;")


def test_an_account_stepped_back_through_its_versions(
    stack: Stack, browser: WebDriver, shoot: Callable[[str], Path]
) -> None:
    account = stack.new_id("acct")
    _ok(stack.http.post(f"/entities/Account/{account}/updates/open", json={"owner": "Ada"}))
    _ok(stack.http.post(f"/entities/Account/{account}/updates/deposit", json={"amount": "50"}))
    _ok(stack.http.post(f"/entities/Account/{account}/updates/deposit", json={"amount": "25"}))

    _open(browser, stack, "/entities")
    form = _wait(browser, "form[data-form=entity]")
    Select(form.find_element(By.NAME, "type")).select_by_visible_text("Account")
    form.find_element(By.NAME, "id").send_keys(account)
    shoot("entity-picker")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    _wait(browser, "main h2", f"Account / {account}")
    _wait(browser, ".versions strong", "version 3 of 3")
    state = _wait(browser, "main pre.json")
    assert '"balance": "75' in state.text and '"owner": "Ada"' in state.text, state.text
    shoot("account-newest")

    _wait(browser, ".versions a", "version 2").click()
    _wait(browser, ".versions strong", "version 2 of 3")
    state = _wait(browser, "main pre.json")
    assert '"balance": "50' in state.text, state.text
    assert "#/entities/Account/" in browser.current_url and "version=2" in browser.current_url
    shoot("account-version-2")

    _wait(browser, ".versions a", "version 1").click()
    _wait(browser, ".versions strong", "version 1 of 3")
    assert '"balance": "0' in _wait(browser, "main pre.json").text
    shoot("account-version-1")


def test_a_compensated_order_shows_its_undo_newest_first(
    stack: Stack, browser: WebDriver, shoot: Callable[[str], Path]
) -> None:
    wid = _compensated_order(stack)
    _open(browser, stack, f"/workflows/Order/{quote(wid)}")
    _wait(browser, "main h2 .badge", "compensated")
    steps = _targets(browser, "step")
    assert [cmd for _, cmd in steps] == ["reserve", "withdraw", "checkout"], steps
    # undone in reverse: the charge (second step) refunded before the stock (first) released
    undone = _targets(browser, "compensation")
    assert undone == [(steps[1][0], "deposit"), (steps[0][0], "release")], undone
    rows = browser.find_elements(By.CSS_SELECTOR, "main table:not(.attempts) tbody tr")
    # the compensations table lists them as registered (#1 the stock, #2 the charge), both done
    assert [r.text.split()[:3] for r in rows] == [
        ["#1", f"{steps[0][0]}.release", "done"],
        ["#2", f"{steps[1][0]}.deposit", "done"],
    ]
    shoot("order-compensated")


def test_a_dead_letter_re_driven_from_the_console(
    stack: Stack, browser: WebDriver, shoot: Callable[[str], Path]
) -> None:
    gadget = stack.new_id("g")
    cid = _ok(stack.http.post(f"/entities/Gadget/{gadget}/signals/explode", json={}), 202)[
        "command_id"
    ]
    assert stack.wait_outcome(cid)["status"] == "dead_lettered"
    listed = _ok(stack.http.get("/deadletters", params={"limit": 200}))["dead_letters"]
    (letter,) = [d for d in listed if d["entity_id"] == gadget]
    assert _ok(stack.http.get(f"/deadletters/{letter['id']}"))["command_id"] == cid
    assert letter["redriven_at"] is None

    _open(browser, stack, "/deadletters")
    button = _wait(browser, f'button[data-action=redrive][data-id="{letter["id"]}"]')
    row = button.find_element(By.XPATH, "./ancestor::tr")
    assert f"Gadget / {gadget}" in row.text and "boom" in row.text, row.text
    shoot("dead-letter")
    button.click()

    def redriven(d: WebDriver) -> WebElement | bool:
        for tr in d.find_elements(By.CSS_SELECTOR, "main tbody tr"):
            try:
                code = tr.find_element(By.TAG_NAME, "code").text
                if code == letter["id"] and "re-driven" in tr.text:
                    return tr
            except Exception:
                return False
        return False

    WebDriverWait(browser, WAIT).until(redriven, "the row never said re-driven")
    shoot("dead-letter-redriven")
    assert _ok(stack.http.get(f"/deadletters/{letter['id']}"))["redriven_at"] is not None


def test_markup_in_ids_and_payloads_shows_as_text(
    stack: Stack, browser: WebDriver, shoot: Callable[[str], Path]
) -> None:
    path = f"/entities/Gadget/{quote(HOSTILE_ID, safe='')}"
    _ok(stack.http.post(f"{path}/updates/note", json={"text": HOSTILE_NOTE}))

    _open(browser, stack, f"/entities/Gadget/{quote(HOSTILE_ID, safe='')}")
    heading = _wait(browser, "main h2", "Gadget /")
    assert heading.text == f"Gadget / {HOSTILE_ID}"
    _wait(browser, "main pre.json", HOSTILE_NOTE)
    assert browser.find_elements(By.CSS_SELECTOR, "main img, main script, main b, main i") == []
    shown_id = browser.find_element(By.NAME, "id").get_attribute("value")
    assert shown_id == HOSTILE_ID  # the picker's input holds it as a value, not as markup
    shoot("hostile-entity")
    assert _pwned(browser) is None
