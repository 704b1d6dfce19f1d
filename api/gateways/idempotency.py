"""The ``Idempotency-Key`` header, after the IETF httpapi Idempotency-Key draft.

A key names one command: the first request with a key claims it and its command id; a
retry with the same key and the same request gets the first response back (marked with
``Idempotent-Replayed: true``); the same key with another request is a 422; a retry while
the first request is still being worked on is a 409. Only final responses are kept (202,
200, and the domain's 409/422/500 verdicts); a 503 or 504 releases the key, so the next
retry re-sends the *same* command id, which the runtime applies at most once.

Keys live in the event store's database (:mod:`eventstore.sql.ledger`) and expire after
``Settings.idempotency_ttl_seconds``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.responses import Response

from actors import InvalidArgumentsError
from api.errors import (
    JSON,
    IdempotencyKeyInFlightError,
    IdempotencyKeyReusedError,
    classify,
    render,
)
from eventstore.sql.ledger import Claim, RequestLedger

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
_KEY = re.compile(KEY_PATTERN)
T = TypeVar("T")

Runner = Callable[..., Any]


def fingerprint(method: str, path: str, canonical_body: bytes) -> str:
    """What makes two requests "the same request" for one key: route and arguments."""
    digest = hashlib.sha256()
    digest.update(method.encode())
    digest.update(b"\0")
    digest.update(path.encode())
    digest.update(b"\0")
    digest.update(canonical_body)
    return digest.hexdigest()


def valid_key(key: str) -> bool:
    return bool(_KEY.match(key))


class IdempotencyKeys:
    """Claims, replays, finishes and releases keys for the command routes."""

    def __init__(self, ledger: RequestLedger, run: Runner, *, ttl: float) -> None:
        self.ledger = ledger
        self._run = run
        self.ttl = ttl

    async def claim(self, key: str, fp: str, command_id: str, lease: float) -> str | Response:
        """The command id to use for this request, or the stored response to replay.

        Raises :class:`IdempotencyKeyInFlightError` or :class:`IdempotencyKeyReusedError`.
        """
        claim: Claim = await self._run(
            self.ledger.claim, key, fp, command_id, lease=lease, ttl=self.ttl
        )
        record = claim.record
        if claim.verdict == "claimed":
            return record.command_id
        if claim.verdict == "mismatch":
            raise IdempotencyKeyReusedError(key)
        if claim.verdict == "in_flight":
            raise IdempotencyKeyInFlightError(key, record.command_id)
        assert record.status_code is not None
        return Response(
            record.body or b"",
            status_code=record.status_code,
            media_type=JSON,
            headers={REPLAYED: "true", HEADER: key},
        )

    async def finish(self, key: str, command_id: str, response: Response) -> None:
        await self._run(self.ledger.finish, key, command_id, response.status_code, response.body)

    async def release(self, key: str, command_id: str) -> None:
        await self._run(self.ledger.release, key, command_id)

    async def keyed(
        self,
        key: str | None,
        fp: str,
        proposed: str,
        lease: float,
        act: Callable[[str], Awaitable[Response]],
    ) -> Response:
        """Run ``act(id)`` under an Idempotency-Key (or plainly without one).

        ``id`` is the key's command id (``proposed`` on first use). A final answer (a
        2xx, or a verdict that stays true: refused, invalid, crashed) is stored and
        replayed; anything else releases the key, so the next retry sends the same id.
        """
        if key is None:
            return await act(proposed)
        if not valid_key(key):
            raise InvalidArgumentsError(
                f"{HEADER} must be 1 to 255 visible ASCII characters, got {key!r}",
                [{"loc": ["header", HEADER], "msg": "invalid key", "type": "value_error"}],
            )
        claimed = await self.claim(key, fp, proposed, lease)
        if isinstance(claimed, Response):
            return claimed
        try:
            response = await act(claimed)
        except Exception as exc:
            status, error = classify(exc)
            if (error.error, status) not in FINAL_ERRORS:
                await self.release(key, claimed)
                raise
            response = render(status, error)
        await self.finish(key, claimed, response)
        response.headers[HEADER] = key
        return response


FINAL_ERRORS = frozenset(
    {
        ("rejected", 409),
        ("workflow_closed", 409),
        ("invalid_command", 422),
        ("invalid_arguments", 422),
        ("handler_crashed", 500),
    }
)
"""Verdicts that stay true, so an Idempotency-Key keeps them; anything else (a 503, a
504, an execution not started yet or parked) lets a retry try again."""
