"""Transactions on a store's database for read models (tables of their own).

Statements name parameters ``%(name)s`` on both databases; on PostgreSQL each
transaction's ``search_path`` is the store's schema, so plain table names work on both.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from psycopg.sql import SQL, Identifier

from eventstore.sql.store import Store, _translated_errors

_PARAM = re.compile(r"%\((\w+)\)s")


class ReadModelTxn:
    """One transaction on a read model's database (a thin, dialect-neutral cursor)."""

    def __init__(self, cursor: Any, kind: str) -> None:
        self._cursor = cursor
        self.kind = kind

    def execute(self, statement: str, params: Mapping[str, Any] | None = None) -> None:
        """Run a statement whose parameters are written ``%(name)s``."""
        if self.kind == "sqlite":
            self._cursor.execute(_PARAM.sub(r":\1", statement), dict(params or {}))
        else:
            self._cursor.execute(statement.encode(), dict(params or {}))

    def fetchall(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self._cursor.fetchall()]

    def fetchone(self) -> dict[str, Any] | None:
        row = self._cursor.fetchone()
        return dict(row) if row is not None else None


class ReadModelDB:
    """Transactions on a store's database for read models (tables of their own)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.kind = store.kind
        self._datastore = store.datastore
        self._schema: str | None = getattr(self._datastore, "schema", None)

    @contextmanager
    def transaction(self, *, commit: bool = True) -> Iterator[ReadModelTxn]:
        with (
            _translated_errors("a read model transaction"),
            self._datastore.transaction(commit=commit) as cursor,
        ):
            if self.kind == "postgresql" and self._schema:
                cursor.execute(SQL("SET LOCAL search_path TO {}").format(Identifier(self._schema)))
            yield ReadModelTxn(cursor, self.kind)
