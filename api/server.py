"""Serving an app with uvicorn: in the foreground (the CLI) or in a thread (tests, bench).

``ServerThread`` binds a socket first (port 0 picks a free one), so the caller knows the
URL before the server runs, and stops the server cleanly, running the app's shutdown.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def config(app: FastAPI, *, log_level: str = "warning", **options: Any) -> uvicorn.Config:
    """uvicorn settings for entityflow: no access log on the hot path, fast loop/parser."""
    return uvicorn.Config(
        app,
        log_level=log_level.lower(),
        access_log=False,
        loop="auto",
        http="auto",
        lifespan="on",
        timeout_graceful_shutdown=5,
        **options,
    )


def _noted(signum: int, frame: FrameType | None) -> None:
    """Stands in for the default handler while uvicorn serves (see :func:`serve`)."""


def serve(app: FastAPI, host: str, port: int, *, log_level: str = "info") -> None:
    """Serve in the foreground until SIGINT/SIGTERM, then return so the caller cleans up.

    uvicorn shuts down gracefully on a signal and then re-raises it with the handler it
    found installed; installing a quiet one first lets the caller stop its worker and
    broker afterwards instead of dying mid-way.
    """
    previous = {sig: signal.signal(sig, _noted) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        uvicorn.Server(config(app, host=host, port=port, log_level=log_level)).run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class ServerThread:
    """An app served by uvicorn in a background thread, on a free (or given) port."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self._sock = bind(host, port)
        self.host, self.port = self._sock.getsockname()[:2]
        self.server = uvicorn.Server(config(app))
        self._thread = threading.Thread(target=self._run, name="entityflow-http", daemon=True)
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self._sock])
        except BaseException as exc:
            self._error = exc

    def start(self, timeout: float = 30.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the HTTP server stopped while starting") from self._error
            if time.monotonic() > deadline:
                raise TimeoutError(f"the HTTP server did not start within {timeout}s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
