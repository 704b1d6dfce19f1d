"""``/deadletters``: the messages no handler could take, and sending one back.

A command whose handler crashed (or bytes that were never a command) is parked in the
mailbox's dead-letter log with its error, and its outcome reads ``dead_lettered``. Once
the cause is fixed, ``POST /deadletters/{id}/redrive`` sends it back under its command id;
the worker applies it then (``GET /commands/{command_id}`` turns ``applied`` or
``rejected``), once: a second re-drive is refused with 409, and copies that raced past
that check are duplicates to the worker. The web console and ``entityflow deadletters``
read exactly these routes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query
from pydantic import BaseModel, Field

from actors import DeadLetterRecord
from actors.mailbox.protocol import redrive_refusal
from api.context import ApiContext
from api.errors import ErrorBody

__all__ = ["DeadLetterDetail", "DeadLetterPageBody", "DeadLetterView", "RedriveAccepted", "install"]

ID_PATTERN = r"^[0-9]{1,9}-[0-9]{1,19}$"
DeadLetterId = Annotated[
    str,
    Path(
        pattern=ID_PATTERN,
        description="the dead letter's id, `<partition>-<offset>` in the dead-letter log",
        examples=["0-17"],
    ),
]


class DeadLetterView(BaseModel):
    """One parked message as the list shows it."""

    id: str = Field(description="`<partition>-<offset>` in the dead-letter log; stable")
    entity_type: str = Field(description="the addressed actor's type ('' if undecodable)")
    entity_id: str = Field(description="the addressed actor's id ('' if undecodable)")
    command: str = Field(description="the command's name ('' if the bytes were not a message)")
    error: str = Field(description="why no handler could take it")
    source: str = Field(description="where it was read: `<commands log>#<partition>@<offset>`")
    at: datetime = Field(description="when it was parked")
    redriven_at: datetime | None = Field(description="when it was sent again; null: not yet")


class DeadLetterDetail(DeadLetterView):
    """One parked message with what a re-drive would send."""

    command_id: str | None = Field(
        description="its command id: GET /commands/{command_id} tells its outcome"
    )
    args: dict[str, Any] | None = Field(description="the command's arguments, as sent")
    redrivable: bool = Field(description="whether POST .../redrive would send it again")


class DeadLetterPageBody(BaseModel):
    dead_letters: list[DeadLetterView]
    next_after: str | None = Field(
        description="pass as ?after= for the next page; null when this page is the last"
    )


class RedriveAccepted(BaseModel):
    """The message is back in the mailbox; its outcome is recorded under its command id."""

    id: str
    command_id: str | None
    redriven_at: datetime
    outcome: str | None = Field(description="where to watch it: /commands/{command_id}")


def _view(d: DeadLetterRecord) -> DeadLetterView:
    return DeadLetterView(
        id=d.id,
        entity_type=d.entity_type,
        entity_id=d.entity_id,
        command=d.command,
        error=d.error,
        source=d.source,
        at=d.at,
        redriven_at=d.redriven_at,
    )


def _detail(d: DeadLetterRecord) -> DeadLetterDetail:
    env = d.envelope
    return DeadLetterDetail(
        **_view(d).model_dump(),
        command_id=d.command_id,
        args=env.args if env is not None else None,
        redrivable=redrive_refusal(d) is None,
    )


_UNAVAILABLE = {"model": ErrorBody, "description": "the broker is unreachable; retry later"}
_INVALID = {"model": ErrorBody, "description": "a malformed id or parameter (ids look like 0-17)"}
_UNKNOWN = {"model": ErrorBody, "description": "no dead letter has this id (or it aged out)"}


def install(app: FastAPI, ctx: ApiContext) -> None:
    mailbox = ctx.mailbox

    async def list_dead_letters(
        after: Annotated[
            str | None,
            Query(pattern=ID_PATTERN, description="the next_after of the previous page"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=500, description="at most this many")] = 100,
    ) -> DeadLetterPageBody:
        page = await ctx.run(mailbox.list_dead_letters, after, limit)
        return DeadLetterPageBody(
            dead_letters=[_view(d) for d in page.dead_letters], next_after=page.next_after
        )

    async def get_dead_letter(dead_letter_id: DeadLetterId) -> DeadLetterDetail:
        return _detail(await ctx.run(mailbox.dead_letter_at, dead_letter_id))

    async def redrive(dead_letter_id: DeadLetterId) -> RedriveAccepted:
        done = await ctx.run(mailbox.redrive, dead_letter_id)
        assert done.redriven_at is not None
        cid = done.command_id
        return RedriveAccepted(
            id=done.id,
            command_id=cid,
            redriven_at=done.redriven_at,
            outcome=f"/commands/{cid}" if cid else None,
        )

    app.add_api_route(
        "/deadletters",
        list_dead_letters,
        methods=["GET"],
        tags=["operations"],
        summary="List dead letters (oldest first, paged): their error, and whether re-driven",
        operation_id="list_dead_letters",
        response_model=DeadLetterPageBody,
        responses={422: _INVALID, 503: _UNAVAILABLE},
    )
    app.add_api_route(
        "/deadletters/{dead_letter_id}",
        get_dead_letter,
        methods=["GET"],
        tags=["operations"],
        summary="One dead letter, with its command id and arguments",
        operation_id="get_dead_letter",
        response_model=DeadLetterDetail,
        responses={404: _UNKNOWN, 422: _INVALID, 503: _UNAVAILABLE},
    )
    app.add_api_route(
        "/deadletters/{dead_letter_id}/redrive",
        redrive,
        methods=["POST"],
        status_code=202,
        tags=["operations"],
        summary="Send a dead letter back to its actor (once); its outcome: GET /commands/{id}",
        operation_id="redrive_dead_letter",
        response_model=RedriveAccepted,
        responses={
            404: _UNKNOWN,
            409: {
                "model": ErrorBody,
                "description": "re-driven already (`already_redriven`), or not a message "
                "that can be sent again (`not_redrivable`: undecodable, or a workflow's call)",
            },
            422: _INVALID,
            503: _UNAVAILABLE,
        },
    )
