"""Errors of the event store: one root, each named for what happened.

Also the one way every layer turns a pydantic ``ValidationError`` into words and data.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


class EventStoreError(Exception):
    """Root of every error the event store raises."""


class RegistryError(EventStoreError, TypeError):
    """An event class or upcaster is defined or registered wrongly."""


class UnknownEventTypeError(EventStoreError, LookupError):
    """A stored event names a type no registered class declares."""


class EventDecodeError(EventStoreError, ValueError):
    """A stored event could not be turned back into its class."""


class StreamNotFoundError(EventStoreError, LookupError):
    """No events are stored for the requested stream (or at the requested version)."""


class ConcurrencyConflictError(EventStoreError):
    """A commit lost a race: a version, a command id or a tracked position was taken.

    The caller's view is stale (another writer moved on, or this writer is a zombie);
    it must reload before trying again.
    """


class StoreUnavailableError(EventStoreError, ConnectionError):
    """The database could not be reached or refused the operation for now."""


class StoreConfigError(EventStoreError, ValueError):
    """The store URL or options cannot be used."""


def explain(exc: ValidationError) -> str:
    """A pydantic validation error as one sentence a user can act on: ``loc: msg; ...``."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or '(body)'}: {e['msg']}"
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    )


def details(exc: ValidationError) -> list[dict[str, Any]]:
    """A pydantic validation error as data: ``[{loc, msg, type}]`` (HTTP 422 bodies)."""
    return [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
