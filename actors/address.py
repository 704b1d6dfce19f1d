"""Addresses: ``EntityType/entity-id`` (workflows: ``workflow:Type/id``), checked once.

An address is the Kafka record key of every message to one actor and the stream id of
its events. Ids are refused where they would be ambiguous or unsafe: empty, over 200
characters, containing ``/``, spaces or control characters, or being ``.`` or ``..``
(a proxy that normalises paths would send ``/entities/Account/../signals/x`` elsewhere).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from actors.errors import InvalidAddressError

_ID = re.compile(r"^[^\s/\x00-\x1f\x7f]{1,200}$")
ID_RULE = "1 to 200 characters without '/', spaces or control characters, and not . or .."


def check_entity_id(entity_id: str) -> str:
    """``entity_id`` if it is a valid id; :class:`InvalidAddressError` saying why if not."""
    if not isinstance(entity_id, str) or not _ID.match(entity_id) or entity_id in (".", ".."):
        raise InvalidAddressError(f"entity id {entity_id!r} is not valid: use {ID_RULE}")
    return entity_id


@dataclass(frozen=True, slots=True)
class Address:
    """One actor's address: its type name and its id."""

    type_name: str
    id: str

    @classmethod
    def of(cls, type_name: str, entity_id: str) -> Address:
        return cls(type_name, check_entity_id(entity_id))

    @classmethod
    def parse(cls, text: str) -> Address:
        type_name, sep, entity_id = text.partition("/")
        if not sep or not type_name:
            raise InvalidAddressError(f"{text!r} is not an address: expected Type/id")
        return cls.of(type_name, entity_id)

    def __str__(self) -> str:
        return f"{self.type_name}/{self.id}"
