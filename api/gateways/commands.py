"""Entity commands over HTTP: the core sender plus what HTTP adds (202/200/504, keys).

A signal is answered 202 once its command id is recorded as accepted and the mailbox has
durably taken the envelope. An update waits for the actor's outcome on the process's
reply channel (the worker replies after it committed), up to ``?timeout=`` seconds; a
timeout is a 504 that carries the command id, which stays valid. Sending, the broker's
acknowledgement and waiting for the answer are :class:`~actors.CommandSender`'s, the same
as for the in-process client; this module adds only HTTP concerns. Bodies are parsed
straight from bytes into the command's argument model, and the envelope is built from
those already-validated parts, so the request path does each piece of work once.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any, Literal

import pydantic_core
from pydantic import ValidationError
from starlette.responses import Response

from actors import (
    CommandSender,
    CommandSpec,
    PayloadTooLargeError,
    ReplyOverdueError,
    SendUnconfirmedError,
    UpdateTimeoutError,
    check_entity_id,
    decoded,
    new_command_id,
)
from actors.envelopes import prevalidated
from actors.sender import watch
from api.errors import JSON, invalid_body
from api.gateways.accepted import AcceptedLog
from api.gateways.idempotency import IdempotencyKeys, fingerprint
from api.metrics import Metrics

Mode = Literal["signal", "update"]
LEASE_MARGIN = 5.0


class CommandGateway:
    """The command routes' one way to the mailbox."""

    def __init__(
        self,
        sender: CommandSender,
        accepted: AcceptedLog,
        keys: IdempotencyKeys,
        metrics: Metrics,
        *,
        default_timeout: float,
        max_payload: int,
    ) -> None:
        self.sender = sender
        self.accepted = accepted
        self.keys = keys
        self.metrics = metrics
        self.default_timeout = default_timeout
        self.max_payload = max_payload
        # Command ids: a random per-process prefix and a counter (as unique as uuid4, and
        # no entropy syscall per request).
        prefix = new_command_id()[:20]
        self._ids = (f"{prefix}{n:012x}" for n in itertools.count(1))

    def next_command_id(self) -> str:
        return next(self._ids)

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

        async def act(command_id: str) -> Response:
            if mode == "signal":
                return await self._signal(handler, address, args, command_id)
            return await self._update(handler, address, args, command_id, wait)

        canonical = json.dumps(args, sort_keys=True, separators=(",", ":")).encode()
        return await self.keys.keyed(
            key,
            fingerprint("POST", path, canonical),
            self.next_command_id(),
            wait + LEASE_MARGIN,
            act,
        )

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

    async def _signal(
        self, handler: CommandSpec, address: str, args: dict[str, Any], command_id: str
    ) -> Response:
        await watch(self.accepted.record(command_id, address, handler.name))
        envelope = prevalidated(command_id, address, "command", handler.name, args, None)
        try:
            await self.sender.accept(envelope)
        except SendUnconfirmedError:
            self.metrics.command(handler.entity_type, handler.name, "unavailable")
            raise
        self.metrics.command(handler.entity_type, handler.name, "accepted")
        return Response(b'{"command_id":"' + command_id.encode() + b'"}', 202, media_type=JSON)

    async def _update(
        self,
        handler: CommandSpec,
        address: str,
        args: dict[str, Any],
        command_id: str,
        wait: float,
    ) -> Response:
        deadline = asyncio.get_running_loop().time() + wait
        envelope = prevalidated(
            command_id, address, "command", handler.name, args, self.sender.route
        )
        try:
            outcome = await self.sender.ask(envelope, deadline=deadline)
        except SendUnconfirmedError:
            self.metrics.command(handler.entity_type, handler.name, "unavailable")
            raise
        except ReplyOverdueError:
            self.metrics.command(handler.entity_type, handler.name, "timeout")
            await self.remember(command_id, address, handler.name)
            raise UpdateTimeoutError(command_id, wait) from None
        self.metrics.command(handler.entity_type, handler.name, outcome.status)
        decoded(handler, outcome)  # a refusal or a crash raises the error the caller sees
        body = pydantic_core.to_json(
            {"result": outcome.result, "version": outcome.version, "command_id": command_id}
        )
        return Response(body, 200, media_type=JSON)

    async def remember(self, command_id: str, address: str, command: str) -> None:
        """A request that timed out is pending: record its id so it is known later."""
        try:
            await watch(self.accepted.record(command_id, address, command))
        except Exception:  # the 504 still carries the id; the outcome will appear later
            return
