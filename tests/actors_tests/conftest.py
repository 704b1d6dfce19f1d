"""Fixtures of the actor tests: real stores (SQLite and PostgreSQL) for the test entities."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eventstore import Store
from examples.shop import ENTITIES
from tests.actors_tests.support import Counter, registry_of

ALL_ENTITIES = (*ENTITIES, Counter)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A store on SQLite or PostgreSQL that knows the shop's and Counter's events."""
    with Store(store_url, registry_of(ALL_ENTITIES)) as s:
        yield s
