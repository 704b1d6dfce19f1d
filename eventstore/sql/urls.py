"""Store URLs (``ENTITYFLOW_STORE``) turned into `eventsourcing` settings.

``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite:///:memory:`` or
``postgresql://user:password@host:port/dbname?schema=name``. The PostgreSQL schema is
created when missing, so each namespace, test or tenant can live in its own schema.
"""

from __future__ import annotations

import contextlib
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from eventstore.errors import StoreConfigError, StoreUnavailableError


@dataclass(frozen=True)
class StoreLocation:
    kind: Literal["sqlite", "postgresql"]
    env: dict[str, str]
    display_url: str
    schema: str | None = None
    conninfo: dict[str, str] = field(default_factory=dict)

    @contextmanager
    def creation_lock(self) -> Iterator[None]:
        """Hold a PostgreSQL advisory lock named after the schema (no-op for SQLite)."""
        if self.kind != "postgresql":
            yield
            return
        key = zlib.crc32(f"entityflow:{self.schema}".encode())
        try:
            conn = psycopg.connect(make_conninfo(**self.conninfo), autocommit=True)
        except psycopg.Error as exc:
            raise StoreUnavailableError(
                f"cannot reach PostgreSQL at {self.display_url}: {exc}"
            ) from exc
        with conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def prepare(self) -> None:
        """Create what must exist before `eventsourcing` creates its tables."""
        if self.kind == "sqlite":
            name = self.env["SQLITE_DBNAME"]
            if "mode=memory" not in name:
                Path(name).parent.mkdir(parents=True, exist_ok=True)
            return
        if self.schema and self.schema != "public":
            try:
                with (
                    psycopg.connect(make_conninfo(**self.conninfo), autocommit=True) as c,
                    # IF NOT EXISTS is not atomic: a process that opened the same new
                    # schema a moment earlier created it between the check and the insert.
                    contextlib.suppress(
                        psycopg.errors.UniqueViolation, psycopg.errors.DuplicateSchema
                    ),
                ):
                    c.execute(
                        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                            sql.Identifier(self.schema)
                        )
                    )
            except psycopg.Error as exc:
                raise StoreUnavailableError(
                    f"cannot reach PostgreSQL at {self.display_url}: {exc}"
                ) from exc


def parse_store_url(url: str, *, pool_size: int = 5) -> StoreLocation:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    common = {"ORIGINATOR_ID_TYPE": "text", "IS_SNAPSHOTTING_ENABLED": "y"}
    if scheme == "sqlite":
        path = unquote(url[len("sqlite://") :])
        if path.startswith("/"):
            path = path[1:]
        if path in ("", ":memory:"):
            path = f"file:entityflow-{uuid.uuid4().hex}?mode=memory&cache=shared"
        return StoreLocation(
            kind="sqlite",
            env={**common, "SQLITE_DBNAME": path, "SQLITE_LOCK_TIMEOUT": "30"},
            display_url=url,
        )
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        dbname = unquote(parts.path.lstrip("/")) or "postgres"
        schema = query.pop("schema", "public")
        unknown = set(query) - {"pool_size", "max_overflow", "lock_timeout"}
        if unknown:
            raise StoreConfigError(
                f"unknown store URL option(s) {sorted(unknown)}; known: schema, pool_size, "
                "max_overflow, lock_timeout"
            )
        host = parts.hostname or "127.0.0.1"
        port = str(parts.port or 5432)
        user = unquote(parts.username or "postgres")
        password = unquote(parts.password or "")
        env = {
            **common,
            "POSTGRES_DBNAME": dbname,
            "POSTGRES_HOST": host,
            "POSTGRES_PORT": port,
            "POSTGRES_USER": user,
            "POSTGRES_PASSWORD": password,
            "POSTGRES_SCHEMA": schema,
            "POSTGRES_POOL_SIZE": query.get("pool_size", str(pool_size)),
            "POSTGRES_MAX_OVERFLOW": query.get("max_overflow", "10"),
            "POSTGRES_LOCK_TIMEOUT": query.get("lock_timeout", "10"),
            "POSTGRES_CONNECT_TIMEOUT": "10",
            # No ping per checkout (a round trip per transaction): a connection broken by a
            # server restart fails its statement, is discarded, and the caller retries.
            "POSTGRES_PRE_PING": "n",
        }
        shown = f"postgresql://{user}@{host}:{port}/{dbname}?schema={schema}"
        conninfo = {"dbname": dbname, "host": host, "port": port, "user": user}
        conninfo["connect_timeout"] = "10"
        if password:
            conninfo["password"] = password
        return StoreLocation(
            kind="postgresql", env=env, display_url=shown, schema=schema, conninfo=conninfo
        )
    raise StoreConfigError(
        f"unsupported store URL {url!r}: use sqlite:///path.db or "
        "postgresql://user@host:5432/dbname"
    )
