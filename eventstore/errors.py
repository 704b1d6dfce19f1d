"""Errors of the event store: one root, each named for what happened."""

from __future__ import annotations


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
