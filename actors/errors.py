"""Errors of the actor layer: one root, each named for what happened.

The API maps these to HTTP status codes in exactly one place (``api/errors.py``).
"""

from __future__ import annotations

from typing import Any


class ActorsError(Exception):
    """Root of every error the actor layer raises."""


class Rejected(ActorsError):  # noqa: N818 - a domain verdict, not an error in the program
    """A domain rule refuses a command: no events are recorded and the caller is told why.

    Raise it from a command handler: ``raise Rejected("insufficient funds")``.
    """

    def __init__(self, reason: str, *, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class DefinitionError(ActorsError, TypeError):
    """An entity or handler is declared in a way entityflow cannot run."""


class UnknownEntityTypeError(ActorsError, LookupError):
    """No entity type is registered under that name."""


class UnknownCommandError(ActorsError, LookupError):
    """The entity type has no command (or query) of that name and kind."""


class InvalidArgumentsError(ActorsError, ValueError):
    """Command or query arguments do not fit the handler's signature."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class PayloadTooLargeError(InvalidArgumentsError):
    """The encoded command is larger than the mailbox accepts."""


class InvalidAddressError(InvalidArgumentsError):
    """An entity id or address is empty, too long, or contains characters we reserve."""


class EntityNotFoundError(ActorsError, LookupError):
    """The entity has no events (at the requested version)."""


class CommandRejectedError(ActorsError):
    """An update was refused by a domain rule (the reply of a :class:`Rejected`)."""

    def __init__(self, command_id: str, reason: str, code: str | None = None) -> None:
        super().__init__(reason)
        self.command_id = command_id
        self.reason = reason
        self.code = code


class CommandFailedError(ActorsError):
    """An update could not be applied: invalid at the worker, or its handler crashed."""

    def __init__(self, command_id: str, status: str, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.command_id = command_id
        self.status = status
        self.reason = reason


class HandlerCrashedError(CommandFailedError):
    """A command's handler raised an unexpected exception; the message was dead-lettered."""

    def __init__(self, command_id: str, reason: str) -> None:
        super().__init__(command_id, "dead_lettered", reason)


class UpdateTimeoutError(ActorsError, TimeoutError):
    """No reply came in time; the command may still be applied later.

    ``command_id`` stays valid: ask for its outcome later instead of resending blindly.
    """

    def __init__(self, command_id: str, timeout: float) -> None:
        super().__init__(
            f"no reply to command {command_id} within {timeout:g}s; it may still be applied, "
            "look up its outcome by command id"
        )
        self.command_id = command_id
        self.timeout = timeout


class MailboxUnavailableError(ActorsError, ConnectionError):
    """The mailbox (broker) could not accept or deliver the message now."""


class SendUnconfirmedError(MailboxUnavailableError):
    """The broker did not confirm a message in time: it may or may not be queued."""

    def __init__(self, command_id: str, reason: str) -> None:
        super().__init__(
            f"the broker did not confirm command {command_id}: {reason}; it may still be "
            "applied, look it up by command id or retry with the same command id"
        )
        self.command_id = command_id


class ReplyOverdueError(ActorsError, TimeoutError):
    """The broker took the send but no reply came by the deadline: the command is
    pending, and its id stays valid (a send the broker never took is a
    :class:`SendUnconfirmedError` instead)."""

    def __init__(self, command_id: str) -> None:
        super().__init__(f"no reply to command {command_id} in time")
        self.command_id = command_id


class UnknownDeadLetterError(ActorsError, LookupError):
    """No dead letter has this id (ids are ``<partition>-<offset>`` of the dead-letter log)."""

    def __init__(self, dead_letter_id: str) -> None:
        super().__init__(f"no dead letter {dead_letter_id!r}")
        self.dead_letter_id = dead_letter_id


class NotRedrivableError(ActorsError):
    """A dead letter that cannot be sent again: already re-driven, or not a message at all."""

    def __init__(self, dead_letter_id: str, reason: str, command_id: str | None = None) -> None:
        super().__init__(f"dead letter {dead_letter_id} cannot be re-driven: {reason}")
        self.dead_letter_id = dead_letter_id
        self.command_id = command_id


class AlreadyRedrivenError(NotRedrivableError):
    """The dead letter was re-driven before: its command's outcome tells how that went."""
