"""Every Python block in the README and in docs/ runs as written, and prints what it promises.

A block is run as its own script in a fresh directory (what a reader who pastes it does).
A ``print(...)  # text`` comment is a promise: the script's output lines must be those
texts, in order, where a block promises output. A block that runs until stopped (a
subscriber) is given what it needs and stopped once it has printed what it should.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore import Commit, EventRegistry, RecordedEvent, Store
from eventstore.kafka.io import KafkaSettings
from eventstore.stream.relay import Relay, RelayOptions
from examples.shop.inventory import Restocked, StockReserved

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
PROMISE = re.compile(r"^\s*print\(.*\)\s+# (.+)$", re.MULTILINE)
# Blocks that need a broker, and what the test gives them (see test_the_event_stream_block).
STREAMING = {"docs/event-stream.md#1"}


def blocks() -> Iterator[tuple[str, str]]:
    for document in DOCUMENTS:
        for n, match in enumerate(BLOCK.finditer(document.read_text()), start=1):
            yield f"{document.relative_to(ROOT)}#{n}", match.group(1)


ALL = dict(blocks())


def run(code: str, cwd: Path, env: dict[str, str] | None = None) -> list[str]:
    (cwd / "block.py").write_text(code)
    done = subprocess.run(
        [sys.executable, "block.py"],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_documents_have_python_blocks() -> None:
    names = {name.split("#")[0] for name in ALL}
    assert {"README.md", "docs/workflows.md", "docs/event-stream.md"} <= names


@pytest.mark.parametrize("name", sorted(set(ALL) - STREAMING))
def test_the_block_runs_and_prints_what_it_promises(name: str, tmp_path: Path) -> None:
    code = ALL[name]
    promised = PROMISE.findall(code)
    lines = run(code, tmp_path)
    outputs = [p for p in promised if not p.startswith("the ")]  # "# the state ..." describes
    assert lines[: len(outputs)] == outputs, f"{name} printed {lines}"


def test_the_quick_start_shows_typed_results_and_the_state_at_a_version(tmp_path: Path) -> None:
    code = ALL["README.md#1"]
    promised = PROMISE.findall(code)
    assert promised[:2] == ["20.00 3", "QueryResult(result=Decimal('20.00'), version=3)"]
    lines = run(code, tmp_path)
    assert lines[2] == (
        "StateView(state=AccountState(status='open', owner='Ada', balance=Decimal('0')), version=1)"
    )
    assert len(lines) == 3
    assert (tmp_path / "quickstart.db").exists()


@pytest.mark.kafka
def test_the_event_stream_block(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Published events of the asked types reach the block, typed, in each entity's order."""
    namespace = f"t{uuid.uuid4().hex[:10]}"
    registry = EventRegistry([Restocked, StockReserved])
    with Store(f"sqlite:///{tmp_path / 'stream.db'}", registry) as store:
        store.commit(
            Commit(
                events=[
                    RecordedEvent("InventoryItem/sku-1", 1, Restocked(quantity=5)),
                    RecordedEvent(
                        "InventoryItem/sku-1", 2, StockReserved(reservation_id="r1", quantity=2)
                    ),
                ]
            )
        )
        relay = Relay(store, KafkaSettings(kafka_bootstrap), RelayOptions(namespace=namespace))
        relay.start()
        try:
            lines = _run_until(
                ALL["docs/event-stream.md#1"],
                tmp_path,
                {
                    "ENTITYFLOW_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                    "ENTITYFLOW_NAMESPACE": namespace,
                },
                count=2,
            )
        finally:
            relay.close()
    assert lines == [
        "InventoryItem/sku-1 1 quantity=5",
        "InventoryItem/sku-1 2 reservation_id='r1' quantity=2",
    ]


def _run_until(code: str, cwd: Path, env: dict[str, str], *, count: int) -> list[str]:
    """Run a block that never ends by itself; stop it once it printed ``count`` lines."""
    (cwd / "block.py").write_text(code)
    out = cwd / "out.txt"
    with out.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-u", "block.py"],
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdout=sink,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 90
            while len(out.read_text().splitlines()) < count:
                if process.poll() is not None:
                    raise AssertionError(f"the block ended early: {process.stderr.read()}")  # type: ignore[union-attr]
                assert time.monotonic() < deadline, f"only {out.read_text()!r} within 90 s"
                time.sleep(0.1)
        finally:
            process.kill()
            process.wait()
    return out.read_text().splitlines()


LINK = re.compile(r"\]\(([^)#]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: str(d.relative_to(ROOT)))
def test_links_stay_inside_the_repository_and_resolve(document: Path) -> None:
    text = document.read_text()
    assert "../shared" not in text, f"{document.name} points outside the repository"
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://")):
            continue
        resolved = (document.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{document.name} links outside: {target}"
        assert resolved.exists(), f"{document.name} links to a missing {target}"
