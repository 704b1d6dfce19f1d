"""Sends commands to entities through the mailbox and turns replies into HTTP responses.

A signal is answered 202 once its command id is recorded as accepted and the mailbox has
durably taken the envelope. An update waits on the app's reply channel for the actor's
reply (the worker replies after it committed), up to ``?timeout=`` seconds; a timeout is a
504 that carries the command id, which stays valid. Bodies are parsed straight from bytes
into the command's argument model, and the envelope is built from already-validated
parts, so the request path does each piece of work once.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import pydantic_core
from pydantic import ValidationError
from starlette.responses import Response

from actors import (
    CommandFailedError,
    CommandRejectedError,
    CommandSpec,
    Envelope,
    InvalidArgumentsError,
    Mailbox,
    MailboxUnavailableError,
    PayloadTooLargeError,
    Reply,
    ReplyChannel,
    UpdateTimeoutError,
    check_entity_id,
    new_command_id,
)
from actors.envelopes import EnvelopeKind
from api.errors import JSON, ApiError, HandlerCrashedError, classify, invalid_body, render
from api.gateways.accepted import AcceptedLog
from api.gateways.idempotency import HEADER, IdempotencyKeys, fingerprint, valid_key
from api.metrics import Metrics

Mode = Literal["signal", "update"]
T = TypeVar("T")
LEASE_MARGIN = 5.0
# Final verdicts are kept for an Idempotency-Key; anything else lets a retry try again.
_FINAL = {("rejected", 409), ("invalid_command", 422), ("handler_crashed", 500)}


class SendUnconfirmedError(ApiError, ConnectionError):
    """The broker did not confirm the envelope in time: it may or may not be queued."""

    def __init__(self, command_id: str, reason: str) -> None:
        super().__init__(
            f"the broker did not confirm command {command_id}: {reason}; it may still be "
            "applied, look it up by command id or retry with an Idempotency-Key"
        )
        self.command_id = command_id


class CommandGateway:
    """The command routes' one way to the mailbox."""

    def __init__(
        self,
        mailbox: Mailbox,
        accepted: AcceptedLog,
        keys: IdempotencyKeys,
        metrics: Metrics,
        *,
        default_timeout: float,
        max_payload: int,
    ) -> None:
        self.mailbox = mailbox
        self.accepted = accepted
        self.keys = keys
        self.metrics = metrics
        self.default_timeout = default_timeout
        self.max_payload = max_payload
        self._replies: ReplyChannel | None = None
        # Command ids: a random per-process prefix and a counter (as unique as uuid4, and
        # no entropy syscall per request).
        prefix = new_command_id()[:20]
        self._ids = (f"{prefix}{n:012x}" for n in itertools.count(1))

    def start(self) -> None:
        if self._replies is None:
            self._replies = self.mailbox.reply_channel()

    def close(self) -> None:
        if self._replies is not None:
            self._replies.close()
            self._replies = None

    @property
    def replies(self) -> ReplyChannel:
        """The app's reply channel, for every route that waits for an actor's verdict."""
        if self._replies is None:
            raise MailboxUnavailableError("the API has not started its reply channel yet")
        return self._replies

    # -- entry point ------------------------------------------------------------------

    async def submit(
        self,
        handler: CommandSpec,
        mode: Mode,
        entity_id: str,
        body: bytes,
        *,
        path: str,
        key: str | None = None,
        timeout: float | None = None,
    ) -> Response:
        address = f"{handler.entity_type}/{check_entity_id(entity_id)}"
        args = self._parse(handler, body)
        wait = timeout if timeout is not None else self.default_timeout
        command_id = next(self._ids)
        if key is None:
            return await self._send(handler, mode, address, args, command_id, wait)
        if not valid_key(key):
            raise InvalidArgumentsError(
                f"{HEADER} must be 1 to 255 visible ASCII characters, got {key!r}",
                [{"loc": ["header", HEADER], "msg": "invalid key", "type": "value_error"}],
            )
        canonical = json.dumps(args, sort_keys=True, separators=(",", ":")).encode()
        claimed = await self.keys.claim(
            key, fingerprint("POST", path, canonical), command_id, wait + LEASE_MARGIN
        )
        if isinstance(claimed, Response):
            return claimed
        command_id = claimed
        try:
            response = await self._send(handler, mode, address, args, command_id, wait)
        except Exception as exc:
            status, error = classify(exc)
            if (error.error, status) in _FINAL:
                response = render(status, error)
                await self.keys.finish(key, command_id, response)
                response.headers[HEADER] = key
                return response
            await self.keys.release(key, command_id)
            raise
        await self.keys.finish(key, command_id, response)
        response.headers[HEADER] = key
        return response

    def _parse(self, handler: CommandSpec, body: bytes) -> dict[str, Any]:
        if len(body) > self.max_payload:
            raise PayloadTooLargeError(
                f"the body of {handler.entity_type}.{handler.name} is {len(body)} bytes, over "
                f"the {self.max_payload}-byte limit"
            )
        try:
            parsed = handler.args_model.model_validate_json(body if body.strip() else b"{}")
        except ValidationError as exc:
            raise invalid_body(exc, f"{handler.entity_type}.{handler.name}") from None
        args: dict[str, Any] = parsed.model_dump(mode="json")
        return args

    # -- sending ------------------------------------------------------------------------

    async def _send(
        self,
        handler: CommandSpec,
        mode: Mode,
        address: str,
        args: dict[str, Any],
        command_id: str,
        wait: float,
    ) -> Response:
        if mode == "signal":
            return await self._signal(handler, address, args, command_id, wait)
        return await self._update(handler, address, args, command_id, wait)

    def _envelope(
        self,
        handler: CommandSpec,
        mode: Mode,
        address: str,
        args: dict[str, Any],
        command_id: str,
        reply_to: str | None,
    ) -> Envelope:
        return prevalidated_envelope(command_id, address, mode, handler.name, args, reply_to)

    async def _acked(self, ack: Future[None], command_id: str, deadline: float | None) -> None:
        """Wait for the broker's acknowledgement; a broker that does not give one is a 503.

        ``deadline`` (an update's) turns running out of the caller's time into a plain
        :class:`TimeoutError` (a 504), distinct from the broker failing to confirm.
        """
        if ack.done():
            try:
                ack.result()
            except MailboxUnavailableError as exc:
                raise SendUnconfirmedError(command_id, str(exc)) from exc
            return
        loop = asyncio.get_running_loop()
        limit = loop.time() + self.default_timeout
        user_first = deadline is not None and deadline < limit
        try:
            async with asyncio.timeout_at(deadline if user_first else limit):
                await _watch(ack)
        except TimeoutError:
            if user_first:
                raise
            raise SendUnconfirmedError(
                command_id, f"no acknowledgement within {self.default_timeout:g}s"
            ) from None
        except MailboxUnavailableError as exc:
            raise SendUnconfirmedError(command_id, str(exc)) from exc

    async def _signal(
        self, handler: CommandSpec, address: str, args: dict[str, Any], command_id: str, wait: float
    ) -> Response:
        await _wait(self.accepted.record(command_id, address, handler.name))
        envelope = self._envelope(handler, "signal", address, args, command_id, None)
        try:
            await self._acked(self.mailbox.send(envelope), command_id, None)
        except SendUnconfirmedError:
            self.metrics.command(handler.entity_type, handler.name, "unavailable")
            raise
        self.metrics.command(handler.entity_type, handler.name, "accepted")
        return Response(b'{"command_id":"' + command_id.encode() + b'"}', 202, media_type=JSON)

    async def _update(
        self, handler: CommandSpec, address: str, args: dict[str, Any], command_id: str, wait: float
    ) -> Response:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        channel = self._replies
        if channel is None:
            raise MailboxUnavailableError("the API has not started its reply channel yet")
        waiting = channel.expect(command_id)
        try:
            envelope = self._envelope(handler, "update", address, args, command_id, channel.route)
            try:
                reply = await send_and_await_reply(
                    self.mailbox,
                    envelope,
                    waiting,
                    ack_timeout=self.default_timeout,
                    deadline=deadline,
                )
            except SendUnconfirmedError:
                self.metrics.command(handler.entity_type, handler.name, "unavailable")
                raise
            except ReplyOverdueError:
                self.metrics.command(handler.entity_type, handler.name, "timeout")
                await self._remember(command_id, address, handler.name)
                raise UpdateTimeoutError(command_id, wait) from None
        finally:
            channel.forget(command_id)
        self.metrics.command(handler.entity_type, handler.name, reply.status)
        if reply.status == "applied":
            body = pydantic_core.to_json(
                {"result": reply.result, "version": reply.version, "command_id": command_id}
            )
            return Response(body, 200, media_type=JSON)
        if reply.status == "rejected":
            raise CommandRejectedError(command_id, reply.error or "rejected")
        if reply.status == "invalid":
            raise CommandFailedError(command_id, "invalid", reply.error or "invalid")
        raise HandlerCrashedError(command_id, reply.error or "the handler crashed")

    async def _remember(self, command_id: str, address: str, command: str) -> None:
        """An update that timed out is pending: record it so its id is known later."""
        try:
            await _wait(self.accepted.record(command_id, address, command))
        except Exception:  # the 504 still carries the id; the outcome will appear later
            return


def prevalidated_envelope(
    command_id: str,
    address: str,
    kind: EnvelopeKind,
    name: str,
    args: dict[str, Any],
    reply_to: str | None,
) -> Envelope:
    """An envelope from parts the route validated already: no second validation pass."""
    return Envelope.model_construct(
        command_id=command_id,
        address=address,
        kind=kind,
        name=name,
        args=args,
        reply_to=reply_to,
        correlation=None,
        reply=None,
        sent_at=datetime.now(UTC),
    )


class ReplyOverdueError(TimeoutError):
    """No reply by the deadline; ``acknowledged`` tells whether the broker took the send."""

    def __init__(self, acknowledged: bool) -> None:
        super().__init__("no reply in time")
        self.acknowledged = acknowledged


async def send_and_await_reply(
    mailbox: Mailbox,
    envelope: Envelope,
    waiting: Future[Reply],
    *,
    ack_timeout: float,
    deadline: float,
) -> Reply:
    """Send an envelope whose reply ``waiting`` will carry, and await that reply.

    The reply implies the broker's acknowledgement, so only a failed (or missing)
    acknowledgement needs to wake the caller: one cross-thread wake-up, not two.
    Raises :class:`SendUnconfirmedError` when the broker fails the send or does not
    confirm it within ``ack_timeout`` s, :class:`ReplyOverdueError` at ``deadline``
    (event loop time).
    """
    loop = asyncio.get_running_loop()
    command_id = envelope.command_id
    outcome = _watch(waiting)
    ack = mailbox.send(envelope)

    def on_ack(f: Future[None]) -> None:
        exc = f.exception()
        if exc is not None:
            loop.call_soon_threadsafe(_unconfirmed, outcome, command_id, exc)

    def ack_overdue() -> None:
        if not ack.done():
            _unconfirmed(outcome, command_id, None)

    ack.add_done_callback(on_ack)
    unconfirmed = loop.call_at(loop.time() + ack_timeout, ack_overdue)
    try:
        async with asyncio.timeout_at(deadline):
            return await outcome
    except TimeoutError:
        raise ReplyOverdueError(ack.done() and ack.exception() is None) from None
    finally:
        unconfirmed.cancel()


def _unconfirmed(waiter: asyncio.Future[Any], command_id: str, exc: BaseException | None) -> None:
    if not waiter.done():
        reason = str(exc) if exc is not None else "no acknowledgement in time"
        waiter.set_exception(SendUnconfirmedError(command_id, reason))


def _wait(future: Future[None]) -> Awaitable[None]:
    return _watch(future)


def _watch(future: Future[T]) -> asyncio.Future[T]:
    """Await a thread's future without cancelling it when the waiter gives up.

    (``asyncio.wrap_future`` cancels the source on timeout; the mailbox still owns it.)
    """
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
