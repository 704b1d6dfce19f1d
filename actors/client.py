"""The in-process client: send commands, await updates, read state, queries and history.

Commands are validated here, before anything is sent, so bad input fails at the caller
with a clear error and writes nothing. Queries and state never go through the mailbox:
they are evaluated on the state rebuilt from the store (snapshot + tail), optionally at
an older version.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from actors.entity import Entity, EntitySpec, check_entity_id
from actors.envelopes import Envelope, EnvelopeKind, Reply
from actors.errors import (
    CommandFailedError,
    CommandRejectedError,
    EntityNotFoundError,
    PayloadTooLargeError,
    UnknownEntityTypeError,
    UpdateTimeoutError,
)
from actors.mailbox.protocol import Mailbox, ReplyChannel
from eventstore import CommandOutcome, RecordedEvent, Store

S = TypeVar("S", bound=BaseModel)
EntityRef = type[Entity[Any]] | str
DEFAULT_MAX_PAYLOAD = 1_000_000


@dataclass(frozen=True)
class UpdateResult:
    command_id: str
    result: Any
    version: int | None


@dataclass(frozen=True)
class QueryResult:
    result: Any
    version: int


@dataclass(frozen=True)
class StateView(Generic[S]):
    state: S
    version: int


class EntityCatalog:
    """The registered entity types, by name and by class."""

    def __init__(self, entities: Sequence[type[Entity[Any]]]) -> None:
        self.specs: dict[str, EntitySpec] = {}
        for cls in entities:
            spec = EntitySpec.of(cls)
            if spec.type_name in self.specs and self.specs[spec.type_name].cls is not cls:
                raise ValueError(f"two entity classes are registered as {spec.type_name!r}")
            self.specs[spec.type_name] = spec

    def spec(self, ref: EntityRef) -> EntitySpec:
        name = ref if isinstance(ref, str) else EntitySpec.of(ref).type_name
        spec = self.specs.get(name)
        if spec is None:
            raise UnknownEntityTypeError(
                f"no entity type {name!r} is registered; registered: "
                + (", ".join(sorted(self.specs)) or "(none)")
            )
        return spec

    def __iter__(self) -> Any:
        return iter(self.specs.values())


class Client:
    """Talks to entities through a mailbox and reads them from the store."""

    def __init__(
        self,
        mailbox: Mailbox,
        store: Store,
        catalog: EntityCatalog,
        *,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        default_timeout: float = 10.0,
    ) -> None:
        self.mailbox = mailbox
        self.store = store
        self.catalog = catalog
        self.max_payload = max_payload
        self.default_timeout = default_timeout
        self._replies: ReplyChannel | None = None

    def _channel(self) -> ReplyChannel:
        if self._replies is None:
            self._replies = self.mailbox.reply_channel()
        return self._replies

    def envelope(
        self,
        entity: EntityRef,
        entity_id: str,
        kind: EnvelopeKind,
        command: str,
        args: Mapping[str, Any] | None,
        *,
        command_id: str | None = None,
        reply_to: str | None = None,
    ) -> Envelope:
        """Validate a command and wrap it; raises before anything is sent."""
        spec = self.catalog.spec(entity)
        address = spec.address(entity_id)
        handler = spec.command(command)
        parsed = handler.parse(args)
        fields: dict[str, Any] = {
            "address": address,
            "kind": kind,
            "name": command,
            "args": parsed.model_dump(mode="json"),
            "reply_to": reply_to,
        }
        if command_id is not None:
            fields["command_id"] = command_id
        env = Envelope(**fields)
        size = len(env.encode())
        if size > self.max_payload:
            raise PayloadTooLargeError(
                f"command {spec.type_name}.{command} encodes to {size} bytes, over the "
                f"{self.max_payload}-byte limit; store large data elsewhere and send a reference"
            )
        return env

    def signal(
        self,
        entity: EntityRef,
        entity_id: str,
        command: str,
        args: Mapping[str, Any] | None = None,
        /,
        *,
        command_id: str | None = None,
        **kwargs: Any,
    ) -> str:
        """Send a signal; returns its command id once the mailbox durably holds it."""
        env = self.envelope(
            entity, entity_id, "signal", command, {**(args or {}), **kwargs}, command_id=command_id
        )
        self.mailbox.send(env).result(timeout=self.default_timeout)
        return env.command_id

    async def update(
        self,
        entity: EntityRef,
        entity_id: str,
        command: str,
        args: Mapping[str, Any] | None = None,
        /,
        *,
        command_id: str | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> UpdateResult:
        """Send an update and wait for its reply (its result and the entity's new version)."""
        channel = self._channel()
        env = self.envelope(
            entity,
            entity_id,
            "update",
            command,
            {**(args or {}), **kwargs},
            command_id=command_id,
            reply_to=channel.route,
        )
        waiting = channel.expect(env.command_id)
        wait = timeout if timeout is not None else self.default_timeout
        try:
            await asyncio.wait_for(asyncio.wrap_future(self.mailbox.send(env)), wait)
            reply = await asyncio.wait_for(asyncio.wrap_future(waiting), wait)
        except TimeoutError:
            raise UpdateTimeoutError(env.command_id, wait) from None
        finally:
            channel.forget(env.command_id)
        return settle(reply)

    def query(
        self,
        entity: EntityRef,
        entity_id: str,
        name: str,
        args: Mapping[str, Any] | None = None,
        /,
        *,
        version: int | None = None,
        **kwargs: Any,
    ) -> QueryResult:
        """Evaluate a query on the stored state (at ``version`` if given)."""
        spec = self.catalog.spec(entity)
        spec.query(name)
        loaded = self._load(spec, entity_id, version)
        return QueryResult(spec.run_query(loaded, name, {**(args or {}), **kwargs}), loaded.version)

    def state(
        self, entity: EntityRef, entity_id: str, *, version: int | None = None
    ) -> StateView[Any]:
        """The entity's state now, or as it was at ``version`` (time travel)."""
        spec = self.catalog.spec(entity)
        loaded = self._load(spec, entity_id, version)
        return StateView(loaded.state, loaded.version)

    def history(
        self, entity: EntityRef, entity_id: str, *, after: int = 0, limit: int = 100
    ) -> list[RecordedEvent]:
        spec = self.catalog.spec(entity)
        return self.store.read(spec.address(entity_id), after=after, limit=limit)

    def outcome(self, command_id: str) -> CommandOutcome | None:
        return self.store.outcome(command_id)

    def _load(self, spec: EntitySpec, entity_id: str, version: int | None) -> Entity[Any]:
        check_entity_id(entity_id)
        if version is not None and version < 1:
            raise EntityNotFoundError(f"versions start at 1, got {version}")
        stream = self.store.load(
            spec.address(entity_id), version=version, snapshot_type=spec.snapshot_type
        )
        if not stream or (version is not None and stream.version < version):
            at = f" at version {version}" if version is not None else ""
            raise EntityNotFoundError(f"{spec.address(entity_id)} has no events{at}")
        return spec.rehydrate(entity_id, stream)

    def close(self) -> None:
        if self._replies is not None:
            self._replies.close()
            self._replies = None


def settle(reply: Reply) -> UpdateResult:
    """Turn a reply into a result, or into the error the caller should see."""
    if reply.status == "applied":
        return UpdateResult(reply.command_id, reply.result, reply.version)
    if reply.status == "rejected":
        raise CommandRejectedError(reply.command_id, reply.error or "rejected")
    raise CommandFailedError(reply.command_id, reply.status, reply.error or reply.status)
