"""A local broker ends with the process that started it, even one killed with SIGKILL.

The brokers run in sessions of their own, so nothing else reaches them: before, a test
run killed from outside left its Apache Kafka (768 MB) running. These tests use ``sleep``
in place of the broker (the mechanism is the same command prefix) so they take a second.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from eventstore.kafka.local import alive, ending_with_this_process

STARTER = """
import subprocess, sys, time
from eventstore.kafka.local import ending_with_this_process
command = ["sleep", "60"]
if sys.argv[1] == "tied":
    command = ending_with_this_process(command)
child = subprocess.Popen(command, start_new_session=True)
print(child.pid, flush=True)
time.sleep(60)
"""


def _orphan_after_killing_its_starter(mode: str) -> int:
    """Start ``sleep`` from a Python process, SIGKILL that process; the sleep's pid."""
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, mode],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert starter.stdout is not None
    pid = int(starter.stdout.readline())
    assert alive(pid)
    starter.kill()
    starter.wait(10)
    return pid


def test_a_child_started_this_way_ends_when_its_starter_is_killed() -> None:
    pid = _orphan_after_killing_its_starter("tied")
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid), "the child outlived the process that started it"


def test_without_it_the_child_outlives_its_starter() -> None:
    """The control: what the first test would see if the prefix did nothing."""
    pid = _orphan_after_killing_its_starter("plain")
    try:
        time.sleep(0.5)
        assert alive(pid)
    finally:
        os.kill(pid, signal.SIGKILL)


def test_from_a_helper_thread_the_command_is_left_as_it_is() -> None:
    """The signal follows the thread that started the child: a helper thread that ends
    would take the broker with it, so only the main thread asks for it."""
    command = ["java", "kafka.Kafka"]
    seen: list[list[str]] = []
    thread = threading.Thread(target=lambda: seen.append(ending_with_this_process(command)))
    thread.start()
    thread.join()
    assert seen == [command]
    assert ending_with_this_process(command)[-2:] == command
    assert ending_with_this_process(command) != command  # setpriv is part of Debian's base


def test_a_command_whose_starter_died_before_the_signal_was_armed_does_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window between fork and ``setpriv`` arming the signal: the starter is gone, so
    the command's parent is no longer it (here: it never was, as the pid is another's)."""
    ran, control = tmp_path / "ran", tmp_path / "control"
    subprocess.run(ending_with_this_process(["touch", str(control)]), check=True)
    monkeypatch.setattr(os, "getpid", lambda: 1)
    finished = subprocess.run(ending_with_this_process(["touch", str(ran)]), check=False)
    assert control.exists()
    assert finished.returncode != 0
    assert not ran.exists()
