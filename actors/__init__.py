"""entityflow's actors: entities, the mailbox, and the runtime that owns them.

Read ``entity.py`` and ``handlers.py`` first (how an entity is declared), then
``runtime.py`` and ``worker.py`` (how a batch of commands becomes one commit);
``client.py`` is how you talk to entities in-process, through ``sender.py``.
"""

from actors.address import Address, check_entity_id
from actors.batch import BatchResult
from actors.client import Client, EntityCatalog, QueryResult, StateView, decoded
from actors.context import CommandContext
from actors.entity import CommandSpec, Entity, EntitySpec
from actors.envelopes import Envelope, new_command_id
from actors.errors import (
    ActorsError,
    AlreadyRedrivenError,
    CommandFailedError,
    CommandRejectedError,
    DefinitionError,
    EntityNotFoundError,
    HandlerCrashedError,
    InvalidAddressError,
    InvalidArgumentsError,
    MailboxUnavailableError,
    NotRedrivableError,
    PayloadTooLargeError,
    Rejected,
    ReplyOverdueError,
    SendUnconfirmedError,
    UnknownCommandError,
    UnknownDeadLetterError,
    UnknownEntityTypeError,
    UpdateTimeoutError,
)
from actors.handlers import CallOptions, Command, Handler, Query, apply, command, query
from actors.host import Host
from actors.kinds import Actor, ActorKind, EntityActor, EntityKind, Turn
from actors.mailbox.memory import InMemoryMailbox
from actors.mailbox.protocol import (
    ACTIVITY_ROUTE,
    DeadLetterPage,
    DeadLetterRecord,
    Delivery,
    Mailbox,
    MailboxConsumer,
    PartitionListener,
    ReplyChannel,
    TaskConsumer,
    is_activity_task,
)
from actors.reader import load_entity
from actors.retry import RetryPolicy
from actors.runtime import Runtime, merge_registries, system_clock
from actors.sender import CommandSender
from actors.timers import TimerIndex, TimerRequest
from actors.worker import Worker

__all__ = [
    "ACTIVITY_ROUTE",
    "Actor",
    "ActorKind",
    "ActorsError",
    "Address",
    "AlreadyRedrivenError",
    "BatchResult",
    "CallOptions",
    "Client",
    "Command",
    "CommandContext",
    "CommandFailedError",
    "CommandRejectedError",
    "CommandSender",
    "CommandSpec",
    "DeadLetterPage",
    "DeadLetterRecord",
    "DefinitionError",
    "Delivery",
    "Entity",
    "EntityActor",
    "EntityCatalog",
    "EntityKind",
    "EntityNotFoundError",
    "EntitySpec",
    "Envelope",
    "Handler",
    "HandlerCrashedError",
    "Host",
    "InMemoryMailbox",
    "InvalidAddressError",
    "InvalidArgumentsError",
    "Mailbox",
    "MailboxConsumer",
    "MailboxUnavailableError",
    "NotRedrivableError",
    "PartitionListener",
    "PayloadTooLargeError",
    "Query",
    "QueryResult",
    "Rejected",
    "ReplyChannel",
    "ReplyOverdueError",
    "RetryPolicy",
    "Runtime",
    "SendUnconfirmedError",
    "StateView",
    "TaskConsumer",
    "TimerIndex",
    "TimerRequest",
    "Turn",
    "UnknownCommandError",
    "UnknownDeadLetterError",
    "UnknownEntityTypeError",
    "UpdateTimeoutError",
    "Worker",
    "apply",
    "check_entity_id",
    "command",
    "decoded",
    "is_activity_task",
    "load_entity",
    "merge_registries",
    "new_command_id",
    "query",
    "system_clock",
]
