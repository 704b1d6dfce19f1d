"""What the local brokers share: the launch error, free ports, and "does it answer?"."""

from __future__ import annotations

import contextlib
import socket

from eventstore.errors import EventStoreError


class BrokerLaunchError(EventStoreError, RuntimeError):
    """A local broker could not be found, installed or started; the message says why."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
        return True
    return False
