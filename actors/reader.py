"""Reading an entity from the store: its state now or at a version, and the rules for
"not found". The in-process client and the API's cached reader both load through here.
"""

from __future__ import annotations

from typing import Any

from actors.address import check_entity_id
from actors.entity import Entity, EntitySpec
from actors.errors import EntityNotFoundError
from eventstore import Store


def load_entity(
    store: Store, spec: EntitySpec, entity_id: str, version: int | None = None
) -> Entity[Any]:
    """The entity rebuilt from snapshot and tail (as of ``version`` if given).

    :class:`EntityNotFoundError` when it has no events (a command creates an entity), or
    no such version.
    """
    check_entity_id(entity_id)
    address = spec.address(entity_id)
    if version is not None and version < 1:
        raise EntityNotFoundError(f"versions start at 1, got {version}")
    stream = store.load(address, version=version, snapshot_type=spec.snapshot_type)
    if not stream:
        raise EntityNotFoundError(f"{address} has no events: no command has created it yet")
    if version is not None and stream.version < version:
        raise EntityNotFoundError(
            f"{address} has no version {version}: its current version is {stream.version}"
        )
    return spec.rehydrate(entity_id, stream)
