"""Workflow starts, signals and cancellations over HTTP: the workflow client plus HTTP.

- **Start** is answered 202 once the broker holds the start message (its command id is
  ``workflow:<Type>/<id>#start``, so the same workflow id twice is the same execution).
  The start is also recorded as accepted, so a status request that comes before a worker
  processed it waits instead of saying 404.
- **Signals and cancellation** are :class:`~sagas.WorkflowClient`'s: they wait for the
  execution's verdict (up to ``?timeout=``): 202 once recorded, 404 if it has not
  started, 409 if it has finished or is parked, 504 (with the command id) if no verdict
  came in time.
- ``Idempotency-Key`` (IETF draft) works as for commands: the key names the workflow id
  of a start (a generated one too) or the command id of a signal, and final answers are
  replayed.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import pydantic_core
from starlette.responses import Response

from actors import SendUnconfirmedError, UpdateTimeoutError
from actors.sender import watch
from api.errors import JSON
from api.gateways.commands import LEASE_MARGIN, CommandGateway
from api.gateways.idempotency import fingerprint
from eventstore import Outcome
from sagas import Workflow, WorkflowClient
from sagas.protocol import start_envelope
from sagas.repairs import RepairAction

MAX_REMEMBERED = 100_000
AnyWorkflow = Workflow[Any, Any]


class WorkflowGateway:
    """The workflow routes' one way to the mailbox."""

    def __init__(self, commands: CommandGateway, client: WorkflowClient) -> None:
        # The same sender, ledgers, metrics and timeout as the entity command routes.
        self.commands = commands
        self.client = client
        self.sender = commands.sender
        self.accepted = commands.accepted
        self.keys = commands.keys
        self.metrics = commands.metrics
        self.default_timeout = commands.default_timeout
        self._started: OrderedDict[str, None] = OrderedDict()

    def started_here(self, command_id: str) -> bool:
        """Whether this API node accepted that start (recently): no store query needed."""
        return command_id in self._started

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
        payload: Any,
        *,
        path: str,
        key: str | None,
        timeout: float | None,
    ) -> Response:
        """Deliver a signal and wait for the execution to record it."""
        wf.address(workflow_id)
        declared = wf.signal_named(name)
        wait = timeout if timeout is not None else self.default_timeout

        async def act(command_id: str) -> Response:
            return await self._verdict(
                wf,
                f"signal {name}",
                self.client.signal(
                    declared, workflow_id, payload, command_id=command_id, timeout=wait
                ),
                workflow_id,
                command_id,
                name,
            )

        canonical = _canonical(declared.encode(payload))
        return await self._keyed(key, path, canonical, uuid.uuid4().hex, wait, act)

    async def update(
        self,
        wf: AnyWorkflow,
        workflow_id: str,
        name: str,
        args: dict[str, Any],
        *,
        path: str,
        key: str | None,
        timeout: float | None,
    ) -> Response:
        """Run an update and answer with its result once the execution recorded it."""
        wf.address(workflow_id)
        spec = wf.update_spec(name)
        spec.parse(args)  # a 422 before anything is sent
        wait = timeout if timeout is not None else self.default_timeout

        async def act(command_id: str) -> Response:
            asked = self.client.update_outcome(
                wf, workflow_id, name, args, command_id=command_id, timeout=wait
            )
            outcome = await self._outcome(
                wf, f"update {name}", asked, workflow_id, command_id, name
            )
            body = {"workflow_id": workflow_id, "command_id": command_id, "result": outcome.result}
            return Response(pydantic_core.to_json(body), 200, media_type=JSON)

        canonical = _canonical({"update": name, "args": args})
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
            return await self._verdict(
                wf,
                "cancel",
                self.client.cancel(wf, workflow_id, reason, command_id=command_id, timeout=wait),
                workflow_id,
                command_id,
                "cancel",
            )

        canonical = _canonical({"reason": reason})
        return await self._keyed(key, path, canonical, uuid.uuid4().hex, wait, act)

    async def repair(
        self,
        wf: AnyWorkflow,
        workflow_id: str,
        index: int,
        action: RepairAction,
        reason: str,
        *,
        path: str,
        key: str | None,
        timeout: float | None,
    ) -> Response:
        """Retry or skip a failed execution's compensation; wait until it was recorded."""
        wf.address(workflow_id)
        wait = timeout if timeout is not None else self.default_timeout

        async def act(command_id: str) -> Response:
            asked = self.client.repair(
                wf, workflow_id, index, action, reason, command_id=command_id, timeout=wait
            )
            return await self._verdict(wf, "repair", asked, workflow_id, command_id, "repair")

        canonical = _canonical({"index": index, "action": action, "reason": reason})
        return await self._keyed(key, path, canonical, uuid.uuid4().hex, wait, act)

    async def _keyed(
        self,
        key: str | None,
        path: str,
        canonical: bytes,
        proposed: str,
        wait: float,
        act: Callable[[str], Awaitable[Response]],
    ) -> Response:
        fp = fingerprint("POST", path, canonical)
        return await self.keys.keyed(key, fp, proposed, wait + LEASE_MARGIN, act)

    async def _start(self, wf: AnyWorkflow, workflow_id: str, input_json: Any) -> Response:
        envelope = start_envelope(wf, workflow_id, input_json)
        command_id = envelope.command_id
        # Recorded as accepted (so a status request on any node waits for it rather than
        # answering 404) while the broker takes it; the 202 needs both.
        recorded = watch(self.accepted.record(command_id, envelope.address, "start"))
        ack = self.sender.mailbox.send(envelope)
        try:
            await recorded
            await self.sender.acknowledged(ack, command_id)
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

    async def _verdict(
        self,
        wf: AnyWorkflow,
        what: str,
        asked: Awaitable[Outcome[Any]],
        workflow_id: str,
        command_id: str,
        name: str,
    ) -> Response:
        await self._outcome(wf, what, asked, workflow_id, command_id, name)
        body = {"workflow_id": workflow_id, "command_id": command_id}
        return Response(pydantic_core.to_json(body), 202, media_type=JSON)

    async def _outcome(
        self,
        wf: AnyWorkflow,
        what: str,
        asked: Awaitable[Outcome[Any]],
        workflow_id: str,
        command_id: str,
        name: str,
    ) -> Outcome[Any]:
        """The execution's verdict, counted; a timeout leaves the command_id to look up."""
        try:
            outcome = await asked
        except UpdateTimeoutError:
            self.metrics.command(wf.type_name, what, "timeout")
            await self.commands.remember(command_id, wf.address(workflow_id), name)
            raise
        except SendUnconfirmedError:
            self.metrics.command(wf.type_name, what, "unavailable")
            raise
        self.metrics.command(wf.type_name, what, outcome.status)
        return outcome


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
