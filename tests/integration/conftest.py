"""Worker processes of a test, killed when it ends (whatever it left running)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.processes import WorkerProcess


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.stop()
