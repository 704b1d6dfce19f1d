"""What the local brokers share: the launch error, free ports, "does it answer?", and
brokers that end with the process that started them."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
from pathlib import Path

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


def alive(pid: int) -> bool:
    """Running: a zombie (exited, not yet reaped by a parent still alive) has stopped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def ending_with_this_process(command: list[str]) -> list[str]:
    """``command`` made to receive SIGTERM when the process starting it dies.

    A broker runs in a session of its own (a Ctrl-C reaches entityflow, which stops it),
    so a test run or ``entityflow dev`` killed with SIGKILL (or by a CI timeout) used to
    leave a broker of 768 MB behind, holding its ports, with nothing to stop it later.
    Linux's parent-death signal, set by util-linux's ``setpriv`` before it runs the
    command, ends it instead. The signal follows the *thread* that started the child, so
    it is only asked for from the main thread (a helper thread that ends would stop the
    broker with it); where ``setpriv`` is missing the command runs as it is.

    A starter that dies after the fork but before ``setpriv`` arms the signal would leave
    the command unarmed (seen once in 200 tries of a starter that kills itself at once),
    so a shell between the two runs the command only while its parent is still the
    starter: an orphan's parent is init or a subreaper.
    """
    setpriv, shell = shutil.which("setpriv"), shutil.which("sh")
    if None in (setpriv, shell) or threading.current_thread() is not threading.main_thread():
        return command
    still_the_starters = 'test "$PPID" = "$0" && exec "$@"'
    return [
        str(setpriv),
        "--pdeathsig",
        "TERM",
        "--",
        str(shell),
        "-c",
        still_the_starters,
        str(os.getpid()),
        *command,
    ]


__all__ = ["BrokerLaunchError", "alive", "answers", "ending_with_this_process", "free_port"]
