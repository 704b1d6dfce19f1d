"""Typed domain events and the registry that gives them stable names.

Stored events carry a deliberate type name and a schema version, never a Python import
path: moving a class to another module must not turn into a data migration. Old stored
shapes are brought up to date by upcasters that are registered explicitly, so reading a
v1 event with v2 code is a visible, tested step rather than a silent coercion.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from eventstore.errors import EventDecodeError, RegistryError, UnknownEventTypeError, explain

JSONDict = dict[str, Any]


class DomainEvent(BaseModel):
    """Base class of every event an entity or workflow records.

    Every concrete event class names its stored type deliberately, ``event_type =
    "Account.Deposited"``: it is what the store and the event stream carry, so renaming or
    moving the class must not change it (registration refuses a class without one). Bump
    ``schema_version`` when the fields change, registering an :class:`Upcaster` from the
    previous version.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str] = "DomainEvent"
    schema_version: ClassVar[int] = 1

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if not isinstance(cls.schema_version, int) or cls.schema_version < 1:
            raise RegistryError(
                f"{cls.__qualname__}.schema_version must be a positive int, "
                f"got {cls.schema_version!r}"
            )


@dataclass(frozen=True)
class Upcaster:
    """Turns the stored JSON of ``event_type`` at ``from_version`` into the next version."""

    event_type: str
    from_version: int
    transform: Callable[[JSONDict], JSONDict]


def upcaster(
    event_type: str | type[DomainEvent], from_version: int
) -> Callable[[Callable[[JSONDict], JSONDict]], Upcaster]:
    """Decorate a ``dict -> dict`` function as the step from ``from_version`` to the next."""
    name = event_type if isinstance(event_type, str) else event_type.event_type

    def wrap(fn: Callable[[JSONDict], JSONDict]) -> Upcaster:
        return Upcaster(event_type=name, from_version=from_version, transform=fn)

    return wrap


class EventRegistry:
    """Maps stable event type names to classes and decodes stored JSON into them.

    One registry serves a whole store; it is built from the event classes of every
    registered entity and workflow type, so names must be unique across them.
    """

    def __init__(
        self,
        events: Iterable[type[DomainEvent]] = (),
        upcasters: Iterable[Upcaster] = (),
    ) -> None:
        self._classes: dict[str, type[DomainEvent]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        for cls in events:
            self.add_event(cls)
        for up in upcasters:
            self.add_upcaster(up)

    def add_event(self, cls: type[DomainEvent]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, DomainEvent)):
            raise RegistryError(f"{cls!r} is not a DomainEvent subclass")
        if "event_type" not in cls.__dict__ or not cls.event_type:
            raise RegistryError(
                f"{cls.__qualname__} has no event_type of its own: name what is stored "
                f'deliberately, e.g. event_type = "{cls.__name__}" (renaming the class '
                "later must not change it)"
            )
        known = self._classes.get(cls.event_type)
        if known is not None and known is not cls:
            raise RegistryError(
                f"event type name {cls.event_type!r} is used by both "
                f"{known.__qualname__} and {cls.__qualname__}; set a distinct "
                "`event_type` on one of them"
            )
        self._classes[cls.event_type] = cls

    def add_upcaster(self, up: Upcaster) -> None:
        key = (up.event_type, up.from_version)
        if key in self._upcasters and self._upcasters[key] is not up:
            raise RegistryError(
                f"two upcasters for {up.event_type!r} from version {up.from_version}"
            )
        self._upcasters[key] = up

    def merge(self, other: EventRegistry) -> None:
        for cls in other._classes.values():
            self.add_event(cls)
        for up in other._upcasters.values():
            self.add_upcaster(up)

    def validate(self) -> None:
        """Check that every schema version has a complete upcasting chain."""
        for name, cls in self._classes.items():
            for version in range(1, cls.schema_version):
                if (name, version) not in self._upcasters:
                    raise RegistryError(
                        f"{cls.__qualname__} is at schema version {cls.schema_version} "
                        f"but no upcaster from version {version} is registered; old "
                        "stored events of this type could not be read"
                    )

    def event_class(self, event_type: str) -> type[DomainEvent]:
        try:
            return self._classes[event_type]
        except KeyError:
            raise UnknownEventTypeError(
                f"no event class is registered under the name {event_type!r}; register "
                "the entity or workflow that records it"
            ) from None

    @property
    def event_types(self) -> Mapping[str, type[DomainEvent]]:
        return dict(self._classes)

    def decode(self, event_type: str, schema_version: int, data: JSONDict) -> DomainEvent:
        cls = self.event_class(event_type)
        if schema_version > cls.schema_version:
            raise EventDecodeError(
                f"stored {event_type!r} is at schema version {schema_version}, newer than "
                f"the code's version {cls.schema_version}; deploy the newer code"
            )
        version = schema_version
        while version < cls.schema_version:
            up = self._upcasters.get((event_type, version))
            if up is None:
                raise EventDecodeError(
                    f"stored {event_type!r} is at schema version {version} and no upcaster "
                    f"to version {version + 1} is registered"
                )
            data = up.transform(dict(data))
            version += 1
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise EventDecodeError(
                f"stored {event_type!r} (schema v{schema_version}) does not fit "
                f"{cls.__qualname__}: {explain(exc)}"
            ) from exc
