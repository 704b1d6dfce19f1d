"""The one way a command leaves a process: sent, acknowledged by the broker, answered.

Every caller (the in-process client, the HTTP gateways, the workflow client) goes through
one :class:`CommandSender`, so the rules live once:

- *accepted* means the mailbox durably holds the envelope (Kafka acknowledged it with
  ``acks=all``); a broker that fails the send, or says nothing within ``ack_timeout``
  seconds, is a :class:`~actors.errors.SendUnconfirmedError` (the command may or may not
  be queued: its id stays valid);
- an *answered* command waits on this process's one reply channel until a deadline; no
  reply by then is a :class:`~actors.errors.ReplyOverdueError` if the broker took the
  send, a :class:`~actors.errors.SendUnconfirmedError` if it did not. The reply implies
  the acknowledgement, so only a failed or missing acknowledgement needs to wake the
  waiter: one cross-thread wake-up, not two.

Waiting never cancels the mailbox's own futures (``asyncio.wrap_future`` would, on a
timeout): the mailbox still owns them.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from actors.envelopes import Envelope
from actors.errors import MailboxUnavailableError, ReplyOverdueError, SendUnconfirmedError
from actors.mailbox.protocol import Mailbox, ReplyChannel
from eventstore import Outcome

T = TypeVar("T")


class CommandSender:
    """Sends envelopes through one mailbox and awaits their acknowledgements and replies."""

    def __init__(self, mailbox: Mailbox, *, ack_timeout: float = 10.0) -> None:
        self.mailbox = mailbox
        self.ack_timeout = ack_timeout
        self._replies: ReplyChannel | None = None
        self._lock = threading.Lock()

    @property
    def replies(self) -> ReplyChannel:
        """This process's reply channel, opened on first use."""
        if self._replies is None:
            with self._lock:
                if self._replies is None:
                    self._replies = self.mailbox.reply_channel()
        return self._replies

    def open(self) -> None:
        """Open the reply channel now rather than on the first request that needs it."""
        _ = self.replies

    @property
    def route(self) -> str:
        """What an envelope's ``reply_to`` must name for :meth:`ask` to see its answer."""
        return self.replies.route

    def close(self) -> None:
        with self._lock:
            replies, self._replies = self._replies, None
        if replies is not None:
            replies.close()

    # -- accepted ---------------------------------------------------------------------

    def send(self, envelope: Envelope, timeout: float | None = None) -> None:
        """Send and block until the mailbox durably holds it (for synchronous callers)."""
        ack = self.mailbox.send(envelope)
        wait = self.ack_timeout if timeout is None else timeout
        try:
            ack.result(timeout=wait)
        except FutureTimeout:
            raise SendUnconfirmedError(
                envelope.command_id, f"no acknowledgement within {wait:g}s"
            ) from None
        except MailboxUnavailableError as exc:
            raise SendUnconfirmedError(envelope.command_id, str(exc)) from exc

    async def accept(self, envelope: Envelope, *, deadline: float | None = None) -> None:
        """Send and wait until the mailbox durably holds it.

        ``deadline`` (event loop time, an update's) makes running out of the caller's
        time a plain :class:`TimeoutError`, distinct from the broker failing to confirm.
        """
        await self.acknowledged(self.mailbox.send(envelope), envelope.command_id, deadline)

    async def acknowledged(
        self, ack: Future[None], command_id: str, deadline: float | None = None
    ) -> None:
        """Wait for a send's acknowledgement (see :meth:`accept`)."""
        if ack.done():
            try:
                ack.result()
            except MailboxUnavailableError as exc:
                raise SendUnconfirmedError(command_id, str(exc)) from exc
            return
        loop = asyncio.get_running_loop()
        limit = loop.time() + self.ack_timeout
        callers_first = deadline is not None and deadline < limit
        try:
            async with asyncio.timeout_at(deadline if callers_first else limit):
                await watch(ack)
        except TimeoutError:
            if callers_first:
                raise
            raise SendUnconfirmedError(
                command_id, f"no acknowledgement within {self.ack_timeout:g}s"
            ) from None
        except MailboxUnavailableError as exc:
            raise SendUnconfirmedError(command_id, str(exc)) from exc

    # -- answered ---------------------------------------------------------------------

    async def ask(self, envelope: Envelope, *, deadline: float) -> Outcome[Any]:
        """Send an envelope that names :attr:`route` and await its outcome until
        ``deadline`` (event loop time)."""
        channel = self.replies
        command_id = envelope.command_id
        if envelope.reply_to != channel.route:
            raise ValueError(f"envelope {command_id} does not name this process's reply route")
        loop = asyncio.get_running_loop()
        outcome = watch(channel.expect(command_id))
        try:
            ack = self.mailbox.send(envelope)
            ack_limit = loop.time() + self.ack_timeout

            def on_ack(f: Future[None]) -> None:
                exc = f.exception()
                if exc is not None:
                    loop.call_soon_threadsafe(_unconfirmed, outcome, command_id, exc)

            def ack_overdue() -> None:
                if not ack.done():
                    _unconfirmed(outcome, command_id, None)

            ack.add_done_callback(on_ack)
            unconfirmed = loop.call_at(ack_limit, ack_overdue)
            try:
                async with asyncio.timeout_at(deadline):
                    return await outcome
            except TimeoutError:
                unconfirmed.cancel()
                await self._taken(ack, command_id, ack_limit)
                raise ReplyOverdueError(command_id) from None
            finally:
                unconfirmed.cancel()
                if not outcome.done():
                    outcome.cancel()  # nobody awaits it any more
        finally:
            channel.forget(command_id)

    async def _taken(self, ack: Future[None], command_id: str, ack_limit: float) -> None:
        """The caller's time ran out: did the broker take the send? If it has not said
        yet, wait for it (at most ``ack_timeout`` after the send), so that a pending
        command (504) is told from an unreachable broker (503)."""
        try:
            async with asyncio.timeout_at(ack_limit):
                await watch(ack)
        except TimeoutError:
            raise SendUnconfirmedError(
                command_id, f"no acknowledgement within {self.ack_timeout:g}s"
            ) from None
        except MailboxUnavailableError as exc:
            raise SendUnconfirmedError(command_id, str(exc)) from exc


def _unconfirmed(waiter: asyncio.Future[Any], command_id: str, exc: BaseException | None) -> None:
    if not waiter.done():
        reason = str(exc) if exc is not None else "no acknowledgement in time"
        waiter.set_exception(SendUnconfirmedError(command_id, reason))


def watch(future: Future[T]) -> asyncio.Future[T]:
    """Await a thread's future without cancelling it when the waiter gives up."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[T] = loop.create_future()

    def settle(waiter: asyncio.Future[T], source: Future[T]) -> None:
        if waiter.done():
            return
        exc = source.exception()
        if exc is not None:
            waiter.set_exception(exc)
        else:
            waiter.set_result(source.result())

    future.add_done_callback(lambda source: loop.call_soon_threadsafe(settle, waiter, source))
    return waiter
