"""The in-process client: send commands, await updates, read state, queries and history.

Every call names its handler by reference (``client.update(Account.withdraw, "acct-7",
amount=Decimal(5))``), so its arguments are checked by mypy and, before anything is sent,
by the handler's argument model: bad input fails at the caller with a clear error and
writes nothing. Results come back as the handler's declared type. Queries and state never
go through the mailbox: they are evaluated on the state rebuilt from the store (snapshot
+ tail), optionally at an older version.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar

from pydantic import BaseModel

from actors.address import check_entity_id
from actors.entity import CommandSpec, Entity, EntitySpec
from actors.envelopes import Envelope, new_command_id, prevalidated
from actors.errors import (
    CommandFailedError,
    CommandRejectedError,
    HandlerCrashedError,
    PayloadTooLargeError,
    ReplyOverdueError,
    UnknownCommandError,
    UnknownEntityTypeError,
    UpdateTimeoutError,
)
from actors.handlers import Command, Handler, Query
from actors.mailbox.protocol import Mailbox
from actors.reader import load_entity
from actors.sender import CommandSender
from eventstore import Outcome, RecordedEvent, Store

S = TypeVar("S", bound=BaseModel)
P = ParamSpec("P")
R = TypeVar("R")
DEFAULT_MAX_PAYLOAD = 1_000_000


@dataclass(frozen=True)
class QueryResult(Generic[R]):
    """A query's result (its declared type) and the version it was evaluated at."""

    result: R
    version: int


@dataclass(frozen=True)
class StateView(Generic[S]):
    state: S
    version: int


class EntityCatalog:
    """The registered entity types, by name (the HTTP edge) and by class."""

    def __init__(self, entities: Sequence[type[Entity[Any]]]) -> None:
        self.specs: dict[str, EntitySpec] = {}
        for cls in entities:
            spec = EntitySpec.of(cls)
            if spec.type_name in self.specs and self.specs[spec.type_name].cls is not cls:
                raise ValueError(f"two entity classes are registered as {spec.type_name!r}")
            self.specs[spec.type_name] = spec

    def spec(self, ref: type[Entity[Any]] | str) -> EntitySpec:
        name = ref if isinstance(ref, str) else EntitySpec.of(ref).type_name
        spec = self.specs.get(name)
        if spec is None or (not isinstance(ref, str) and spec.cls is not ref):
            raise UnknownEntityTypeError(
                f"no entity type {name!r} is registered; registered: "
                + (", ".join(sorted(self.specs)) or "(none)")
            )
        return spec

    def handler(self, handler: Handler[Any, Any]) -> tuple[EntitySpec, CommandSpec]:
        """The registered entity and compiled handler a handler reference names."""
        spec = self.spec(handler.entity)
        return spec, spec.compiled(handler)

    def __iter__(self) -> Iterator[EntitySpec]:
        return iter(self.specs.values())

    def entities(self) -> list[type[Entity[Any]]]:
        return [spec.cls for spec in self.specs.values()]


def decoded(command: CommandSpec, outcome: Outcome[Any]) -> Outcome[Any]:
    """An applied outcome with its result as the handler declared it; an error otherwise."""
    if outcome.status == "applied":
        return outcome.with_result(command.decode_result(outcome.result))
    if outcome.status == "rejected":
        raise CommandRejectedError(outcome.command_id, outcome.error or "rejected", outcome.code)
    if outcome.status == "dead_lettered":
        raise HandlerCrashedError(outcome.command_id, outcome.error or "the handler crashed")
    raise CommandFailedError(outcome.command_id, outcome.status, outcome.error or outcome.status)


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
        sender: CommandSender | None = None,
    ) -> None:
        self.mailbox = mailbox
        self.store = store
        self.catalog = catalog
        self.max_payload = max_payload
        self.default_timeout = default_timeout
        self.sender = sender or CommandSender(mailbox, ack_timeout=default_timeout)

    def envelope(
        self,
        handler: Command[Any, Any],
        entity_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        reply_to: str | None = None,
    ) -> tuple[CommandSpec, Envelope]:
        """Validate a command and wrap it; raises before anything is sent."""
        spec, command = self.catalog.handler(handler)
        if command.kind != "command":
            raise UnknownCommandError(f"{handler!r} is a query, not a command: query it")
        address = spec.address(entity_id)
        parsed = command.parse(handler.arguments(args, kwargs))
        options = handler.call_options
        env = prevalidated(
            options.command_id or new_command_id(),
            address,
            "command",
            command.name,
            parsed.model_dump(mode="json"),
            reply_to,
        )
        size = len(env.encode())
        if size > self.max_payload:
            raise PayloadTooLargeError(
                f"command {spec.type_name}.{command.name} encodes to {size} bytes, over the "
                f"{self.max_payload}-byte limit; store large data elsewhere and send a reference"
            )
        return command, env

    def prepare(
        self, handler: Command[P, Any], entity_id: str, /, *args: P.args, **kwargs: P.kwargs
    ) -> Envelope:
        """The envelope :meth:`signal` would send, validated, for a caller that sends many
        itself and waits for their acknowledgements together (bulk loads, benchmarks)."""
        return self.envelope(handler, entity_id, args, kwargs)[1]

    def signal(
        self, handler: Command[P, R], entity_id: str, /, *args: P.args, **kwargs: P.kwargs
    ) -> str:
        """Send a command fire-and-forget; its command id once the mailbox durably holds it."""
        _, env = self.envelope(handler, entity_id, args, kwargs)
        self.sender.send(env, handler.call_options.timeout)
        return env.command_id

    async def update(
        self, handler: Command[P, R], entity_id: str, /, *args: P.args, **kwargs: P.kwargs
    ) -> Outcome[R]:
        """Send a command and wait for its outcome: its result and the entity's new version.

        A refusal raises :class:`CommandRejectedError`; no answer within the handler's
        ``options(timeout=...)`` (default: the client's) raises :class:`UpdateTimeoutError`
        with the command id, which stays valid.
        """
        command, env = self.envelope(handler, entity_id, args, kwargs, reply_to=self.sender.route)
        wait = handler.call_options.timeout or self.default_timeout
        deadline = asyncio.get_running_loop().time() + wait
        try:
            outcome = await self.sender.ask(env, deadline=deadline)
        except ReplyOverdueError:
            raise UpdateTimeoutError(env.command_id, wait) from None
        return decoded(command, outcome)

    def query(
        self, handler: Query[P, R], entity_id: str, /, *args: P.args, **kwargs: P.kwargs
    ) -> QueryResult[R]:
        """Evaluate a query on the stored state (at ``Account.balance.at(version)`` if set)."""
        spec, query = self.catalog.handler(handler)
        if query.kind != "query":
            raise UnknownCommandError(f"{handler!r} is a command, not a query: send it")
        parsed = query.parse(handler.arguments(args, kwargs))
        entity = load_entity(self.store, spec, entity_id, handler.call_options.version)
        result = query.decode_result(spec.run_query(entity, query, parsed))
        return QueryResult(result, entity.version)

    def state(
        self, entity: type[Entity[S]], entity_id: str, *, version: int | None = None
    ) -> StateView[S]:
        """The entity's state now, or as it was at ``version`` (time travel)."""
        spec = self.catalog.spec(entity)
        loaded = load_entity(self.store, spec, entity_id, version)
        return StateView(loaded.state, loaded.version)

    def history(
        self, entity: type[Entity[Any]], entity_id: str, *, after: int = 0, limit: int = 100
    ) -> list[RecordedEvent]:
        spec = self.catalog.spec(entity)
        return self.store.read(spec.address(check_entity_id(entity_id)), after=after, limit=limit)

    def outcome(self, command_id: str) -> Outcome[Any] | None:
        return self.store.outcome(command_id)

    def close(self) -> None:
        self.sender.close()
