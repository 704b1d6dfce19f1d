"""The mailbox: envelopes to actors, partitioned by address, with replies.

``protocol.py`` is the seam (the ``Mailbox`` protocol and its parts); ``memory.py`` is the
in-memory mailbox of fast unit tests; ``kafka.py`` is the production one (import it
explicitly: it needs the broker client).
"""

from actors.mailbox.memory import InMemoryMailbox
from actors.mailbox.protocol import (
    ACTIVITY_ROUTE,
    LOCAL_OFFSET,
    Delivery,
    Mailbox,
    MailboxConsumer,
    PartitionListener,
    ReplyChannel,
    TaskConsumer,
    is_activity_task,
    position_name,
)

__all__ = [
    "ACTIVITY_ROUTE",
    "LOCAL_OFFSET",
    "Delivery",
    "InMemoryMailbox",
    "Mailbox",
    "MailboxConsumer",
    "PartitionListener",
    "ReplyChannel",
    "TaskConsumer",
    "is_activity_task",
    "position_name",
]
