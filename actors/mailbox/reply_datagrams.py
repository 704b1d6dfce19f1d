"""Replies as UDP datagrams, beside the Kafka reply topic: the fast way back to a caller.

An update's round trip crosses the broker twice: the command to the worker, the reply
back. The way back needs no log: the outcome is already stored (a caller that misses its
reply can ask), and the Kafka reply topic still carries every reply. So a caller that
can be reached also listens on a UDP port, its reply route names it, and a worker sends
each batch's replies there too, right after the commit. Whichever copy comes first
answers the caller; the other finds nobody waiting. A datagram that is lost, too large,
or sent to an address the worker cannot reach costs nothing but the time the Kafka
copy takes.

Re-decided on Apache Kafka, which answers a waiting fetch on append (so the topic copy
waits out no fetch wait): it still pays, by one broker hop per update. Sequential W1
updates over HTTP, one API and one worker process, PostgreSQL, three pairs on one broker
in one sitting: p50 30.3, 61.8 and 67.7 ms with datagrams, 34.0, 71.9 and 80.0 ms
without (a loaded machine; each pair run back to back).

A datagram starts with the reply topic's name (random, per process) and a newline, so a
stray datagram, or one meant for an earlier process on the same port, is ignored. This
is no more trust than the reply topic asks for: whoever can write to it can answer too.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from actors.envelopes import OUTCOMES
from eventstore import Outcome

log = logging.getLogger("entityflow.mailbox")
MAX_DATAGRAM = 60_000
"""Larger reply batches travel only through the topic (UDP's limit is 65,507 bytes)."""
_MARK = "#udp="


def advertised_host(setting: str) -> str | None:
    """The IPv4 address workers should send datagrams to (``auto``: this host's).

    A name is resolved here, once, so that workers never look one up per reply; one that
    does not resolve is a configuration error, said at start.
    """
    if setting == "off":
        return None
    if setting == "auto":
        try:
            return socket.gethostbyname(socket.gethostname())
        except OSError:
            return "127.0.0.1"
    try:
        return socket.gethostbyname(setting)
    except OSError as exc:
        raise ValueError(
            f"ENTITYFLOW_REPLY_HOST={setting!r} does not resolve to an IPv4 address ({exc}); "
            "give an address workers can reach, or 'auto', or 'off'"
        ) from exc


def with_datagrams(route: str, host: str, port: int) -> str:
    """A reply route that also names a datagram address (Kafka topic names have no '#')."""
    return f"{route}{_MARK}{host}:{port}"


def split_route(route: str) -> tuple[str, tuple[str, int] | None]:
    """(the topic route, the datagram address or None).

    Only an IPv4 literal and a port in range make an address: a route comes from a
    message, and a worker must neither look names up nor fail after its commit on one.
    """
    base, mark, address = route.partition(_MARK)
    if not mark:
        return route, None
    host, _, port = address.rpartition(":")
    try:
        socket.inet_pton(socket.AF_INET, host)
        number = int(port)
    except (OSError, ValueError):
        return base, None
    return base, ((host, number) if 0 < number < 65_536 else None)


class DatagramSender:
    """The worker's side: one socket, one datagram per reply route and batch."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self.sent = 0

    def send(self, address: tuple[str, int], topic: str, payload: bytes) -> None:
        data = topic.encode() + b"\n" + payload
        if len(data) > MAX_DATAGRAM:
            return
        try:
            self._sock.sendto(data, address)
            self.sent += 1
        except OSError as exc:  # the topic copy still goes; say why this one did not
            log.debug("reply datagram to %s not sent: %s", address, exc)

    def close(self) -> None:
        self._sock.close()


class DatagramReceiver:
    """The caller's side: a port, and a thread that hands each valid batch to ``deliver``."""

    def __init__(
        self, host: str, topic: str, deliver: Callable[[Sequence[Outcome[Any]]], None]
    ) -> None:
        self.topic = topic
        self._prefix = topic.encode() + b"\n"
        self._deliver = deliver
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        # Workers on other hosts send here; a loopback address needs no wider exposure.
        local_only = host.startswith("127.") or host == "localhost"
        self._sock.bind(("127.0.0.1" if local_only else "0.0.0.0", 0))
        self._sock.settimeout(0.2)
        self.address = (host, self._sock.getsockname()[1])
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="entityflow-datagrams", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65_536)
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            if not data.startswith(self._prefix):
                continue
            try:
                replies = OUTCOMES.validate_json(data[len(self._prefix) :])
            except ValidationError:
                log.warning("ignoring an undecodable reply datagram for %s", self.topic)
                continue
            self.received += 1
            self._deliver(replies)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
