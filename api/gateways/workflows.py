"""Starts, signals and cancels workflow executions through the mailbox, for the routes.

- **Start** is answered 202 once the broker holds the start message: its command id is
  ``workflow:<Type>/<id>#start``, so the same workflow id twice is the same execution
  (the coordinator ignores a second start). The start is also recorded as accepted, so
  a status request that comes before a worker processed it waits instead of saying 404.
- **Signals and cancellation** wait for the execution's verdict on the API's reply
  channel (up to ``?timeout=``): 202 once the execution recorded it, 404 if it has not
  started, 409 if it has finished or is parked, 504 (with the command id) if no verdict
  came in time. Each request is a new command id; a cancellation of a cancelled
  execution is a no-op.
- ``Idempotency-Key`` (IETF draft) works as for commands: the key names the workflow id
  of a start (a generated one too) or the command id of a signal, and final answers are
  replayed.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any

import pydantic_core
from starlette.responses import Response

from actors import (
    Envelope,
    InvalidArgumentsError,
    MailboxUnavailableError,
    Reply,
    UpdateTimeoutError,
)
from actors.envelopes import EnvelopeKind
from api.errors import JSON, HandlerCrashedError, WorkflowClosedError, classify, render
from api.gateways.commands import (
    CommandGateway,
    ReplyOverdueError,
    SendUnconfirmedError,
    _watch,
    prevalidated_envelope,
    send_and_await_reply,
)
from api.gateways.idempotency import HEADER, fingerprint, valid_key
from api.readers.workflows import WorkflowReader
from sagas import (
    InvalidWorkflowInputError,
    Workflow,
    WorkflowNotFoundError,
    WorkflowParkedError,
)
from sagas.coordinator import start_command_id

LEASE_MARGIN = 5.0
MAX_REMEMBERED = 100_000
AnyWorkflow = Workflow[Any, Any]
# Verdicts that stay true, so an Idempotency-Key keeps them; anything else lets a retry
# try again (an execution not started yet may start; a parked one may resume).
_FINAL = {("workflow_closed", 409), ("invalid_arguments", 422), ("handler_crashed", 500)}


class WorkflowGateway:
    """The workflow routes' one way to the mailbox."""

    def __init__(self, commands: CommandGateway, reader: WorkflowReader) -> None:
        # The same mailbox, ledgers, metrics and timeout as the entity command routes.
        self.commands = commands
        self.mailbox = commands.mailbox
        self.accepted = commands.accepted
        self.keys = commands.keys
        self.metrics = commands.metrics
        self.default_timeout = commands.default_timeout
        self.reader = reader
        self._started: OrderedDict[str, None] = OrderedDict()

    def started_here(self, command_id: str) -> bool:
        """Whether this API node accepted that start (recently): no store query needed."""
        return command_id in self._started

    # -- entry points -------------------------------------------------------------------

    async def start(
        self,
        wf: AnyWorkflow,
        workflow_id: str | None,
        input_json: Any,
        *,
        path: str,
        key: str | None,
    ) -> Response:
        """Start an execution (or find the one with this id): 202 ``{workflow_id}``."""
        if workflow_id is not None:
            wf.address(workflow_id)  # a bad id is a 422 before anything is claimed or sent
        canonical = _canonical({"workflow_id": workflow_id, "input": input_json})

        async def act(wid: str) -> Response:
            return await self._start(wf, wid, input_json)

        proposed = workflow_id if workflow_id is not None else uuid.uuid4().hex
        return await self._keyed(key, path, canonical, proposed, self.default_timeout, act)

    async def signal(
        self,
        wf: AnyWorkflow,
        workflow_id: str,
        name: str,
        payload_json: Any,
        *,
        path: str,
        key: str | None,
        timeout: float | None,
    ) -> Response:
        """Deliver a signal and wait for the execution to record it."""
        wf.address(workflow_id)
        wait = timeout if timeout is not None else self.default_timeout

        async def act(command_id: str) -> Response:
            args = {"payload": payload_json}
            return await self._ask(wf, workflow_id, "signal", name, args, command_id, wait)

        canonical = _canonical(payload_json)
        return await self._keyed(key, path, canonical, uuid.uuid4().hex, wait, act)

    async def cancel(
        self,
        wf: AnyWorkflow,
        workflow_id: str,
        reason: str,
        *,
        path: str,
        key: str | None,
        timeout: float | None,
    ) -> Response:
        """Ask the execution to stop and compensate; wait until it recorded the request."""
        wf.address(workflow_id)
        wait = timeout if timeout is not None else self.default_timeout

        async def act(command_id: str) -> Response:
            args = {"reason": reason}
            return await self._ask(wf, workflow_id, "control", "cancel", args, command_id, wait)

        canonical = _canonical({"reason": reason})
        return await self._keyed(key, path, canonical, uuid.uuid4().hex, wait, act)

    # -- Idempotency-Key ----------------------------------------------------------------

    async def _keyed(
        self,
        key: str | None,
        path: str,
        canonical: bytes,
        proposed: str,
        wait: float,
        act: Callable[[str], Awaitable[Response]],
    ) -> Response:
        """Run ``act(id)`` under an Idempotency-Key: ``id`` is the key's (or ``proposed``)."""
        if key is None:
            return await act(proposed)
        if not valid_key(key):
            raise InvalidArgumentsError(
                f"{HEADER} must be 1 to 255 visible ASCII characters, got {key!r}",
                [{"loc": ["header", HEADER], "msg": "invalid key", "type": "value_error"}],
            )
        claimed = await self.keys.claim(
            key, fingerprint("POST", path, canonical), proposed, wait + LEASE_MARGIN
        )
        if isinstance(claimed, Response):
            return claimed
        try:
            response = await act(claimed)
        except Exception as exc:
            status, error = classify(exc)
            if (error.error, status) not in _FINAL:
                await self.keys.release(key, claimed)
                raise
            response = render(status, error)
        await self.keys.finish(key, claimed, response)
        response.headers[HEADER] = key
        return response

    # -- messages -----------------------------------------------------------------------

    async def _start(self, wf: AnyWorkflow, workflow_id: str, input_json: Any) -> Response:
        address = wf.address(workflow_id)
        command_id = start_command_id(address)
        envelope = prevalidated_envelope(
            command_id, address, "control", "start", {"input": input_json}, None
        )
        # Recorded as accepted (so a status request on any node waits for it rather than
        # answering 404) while the broker takes it; the 202 needs both.
        recorded = _watch(self.accepted.record(command_id, address, "start"))
        ack = self.mailbox.send(envelope)
        try:
            await recorded
            await self._acked(ack, command_id)
        except SendUnconfirmedError:
            self.metrics.command(wf.type_name, "start", "unavailable")
            raise
        self._started[command_id] = None
        if len(self._started) > MAX_REMEMBERED:
            self._started.popitem(last=False)
        self.metrics.command(wf.type_name, "start", "accepted")
        location = f"/workflows/{wf.name}/{urllib.parse.quote(workflow_id, safe='')}"
        return Response(
            pydantic_core.to_json({"workflow_id": workflow_id}),
            202,
            media_type=JSON,
            headers={"Location": location},
        )

    async def _ask(
        self,
        wf: AnyWorkflow,
        workflow_id: str,
        kind: EnvelopeKind,
        name: str,
        args: dict[str, Any],
        command_id: str,
        wait: float,
    ) -> Response:
        address = wf.address(workflow_id)
        what = "cancel" if kind == "control" else f"signal {name}"
        reply = await self._round_trip(
            address,
            lambda route: prevalidated_envelope(command_id, address, kind, name, args, route),
            wait,
        )
        self.metrics.command(wf.type_name, what, reply.status)
        if reply.status == "applied":
            body = {"workflow_id": workflow_id, "command_id": command_id}
            return Response(pydantic_core.to_json(body), 202, media_type=JSON)
        reason = reply.error or reply.status
        if reply.status == "rejected":
            record = await self.reader.current(wf, workflow_id)
            if not record.started:
                raise WorkflowNotFoundError(f"{address} has not been started")
            if record.parked is not None or " is parked " in reason:
                raise WorkflowParkedError(reason)
            raise WorkflowClosedError(command_id, reason)
        if reply.status == "invalid":
            raise InvalidWorkflowInputError(reason)
        raise HandlerCrashedError(command_id, reason)

    async def _round_trip(
        self, address: str, build: Callable[[str], Envelope], wait: float
    ) -> Reply:
        """Send the envelope ``build(reply route)`` and wait up to ``wait`` s for its reply."""
        channel = self.commands.replies
        envelope = build(channel.route)
        command_id = envelope.command_id
        loop = asyncio.get_running_loop()
        waiting = channel.expect(command_id)
        try:
            reply = await send_and_await_reply(
                self.mailbox,
                envelope,
                waiting,
                ack_timeout=self.default_timeout,
                deadline=loop.time() + wait,
            )
        except ReplyOverdueError as overdue:
            if not overdue.acknowledged and wait >= self.default_timeout:
                # The broker had all its time and did not confirm: it is the problem.
                raise SendUnconfirmedError(command_id, "no acknowledgement in time") from None
            await self._remember(command_id, address, envelope.name)
            raise UpdateTimeoutError(command_id, wait) from None
        finally:
            channel.forget(command_id)
        return reply

    async def _acked(self, ack: Future[None], command_id: str) -> None:
        """Wait for the broker's acknowledgement; none in time (or a failure) is a 503."""
        try:
            async with asyncio.timeout(self.default_timeout):
                await _watch(ack)
        except TimeoutError:
            raise SendUnconfirmedError(
                command_id, f"no acknowledgement within {self.default_timeout:g}s"
            ) from None
        except MailboxUnavailableError as exc:
            raise SendUnconfirmedError(command_id, str(exc)) from exc

    async def _remember(self, command_id: str, address: str, name: str) -> None:
        """A request that timed out is pending: record its id so it is known later."""
        try:
            await _watch(self.accepted.record(command_id, address, name))
        except Exception:  # the 504 still carries the id; the outcome will appear later
            return


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
