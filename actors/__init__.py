"""entityflow's actors: entities, the mailbox, and the runtime that owns them.

Read ``entity.py`` first (how an entity is declared), then ``runtime.py`` and
``worker.py`` (how a batch of commands becomes one commit); ``client.py`` is how you
talk to entities in-process.
"""

from actors.client import Client, EntityCatalog, QueryResult, StateView, UpdateResult, settle
from actors.decorators import apply, query, signal, update
from actors.entity import CommandSpec, Entity, EntitySpec, check_entity_id
from actors.envelopes import Envelope, Reply, new_command_id
from actors.errors import (
    ActorsError,
    CommandFailedError,
    CommandRejectedError,
    DefinitionError,
    EntityNotFoundError,
    InvalidAddressError,
    InvalidArgumentsError,
    MailboxUnavailableError,
    PayloadTooLargeError,
    QueryMutationError,
    Rejected,
    UnknownCommandError,
    UnknownEntityTypeError,
    UpdateTimeoutError,
)
from actors.host import Host
from actors.kinds import Actor, ActorKind, EntityActor, EntityKind, Turn
from actors.mailbox.memory import InMemoryMailbox
from actors.mailbox.protocol import (
    Delivery,
    Mailbox,
    MailboxConsumer,
    PartitionListener,
    ReplyChannel,
)
from actors.runtime import BatchResult, Runtime, system_clock
from actors.worker import Worker

__all__ = [
    "Actor",
    "ActorKind",
    "ActorsError",
    "BatchResult",
    "Client",
    "CommandFailedError",
    "CommandRejectedError",
    "CommandSpec",
    "DefinitionError",
    "Delivery",
    "Entity",
    "EntityActor",
    "EntityCatalog",
    "EntityKind",
    "EntityNotFoundError",
    "EntitySpec",
    "Envelope",
    "Host",
    "InMemoryMailbox",
    "InvalidAddressError",
    "InvalidArgumentsError",
    "Mailbox",
    "MailboxConsumer",
    "MailboxUnavailableError",
    "PartitionListener",
    "PayloadTooLargeError",
    "QueryMutationError",
    "QueryResult",
    "Rejected",
    "Reply",
    "ReplyChannel",
    "Runtime",
    "StateView",
    "Turn",
    "UnknownCommandError",
    "UnknownEntityTypeError",
    "UpdateResult",
    "UpdateTimeoutError",
    "Worker",
    "apply",
    "check_entity_id",
    "new_command_id",
    "query",
    "settle",
    "signal",
    "system_clock",
    "update",
]
