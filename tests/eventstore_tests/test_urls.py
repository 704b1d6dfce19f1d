"""Store URLs: SQLite paths, PostgreSQL schemas and options."""

from __future__ import annotations

import pytest

from eventstore import StoreConfigError
from eventstore.sql.urls import parse_store_url


def test_sqlite_paths() -> None:
    assert parse_store_url("sqlite:///rel/dir/x.db").env["SQLITE_DBNAME"] == "rel/dir/x.db"
    assert parse_store_url("sqlite:////abs/x.db").env["SQLITE_DBNAME"] == "/abs/x.db"
    memory = parse_store_url("sqlite:///:memory:").env["SQLITE_DBNAME"]
    assert memory.startswith("file:entityflow-") and memory.endswith("?mode=memory&cache=shared")
    assert memory != parse_store_url("sqlite://").env["SQLITE_DBNAME"]


def test_postgresql_url() -> None:
    loc = parse_store_url("postgresql://ada:s%40cret@db.example:6543/shop?schema=t1&pool_size=9")
    assert loc.kind == "postgresql"
    assert loc.schema == "t1"
    assert {k: loc.env[k] for k in ("POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_DBNAME")} == {
        "POSTGRES_HOST": "db.example",
        "POSTGRES_PORT": "6543",
        "POSTGRES_DBNAME": "shop",
    }
    assert (loc.env["POSTGRES_USER"], loc.env["POSTGRES_PASSWORD"]) == ("ada", "s@cret")
    assert loc.env["POSTGRES_POOL_SIZE"] == "9"
    assert "cret" not in loc.display_url
    assert parse_store_url("postgres://h/db").schema == "public"


@pytest.mark.parametrize("url", ["mysql://h/db", "redis://h", "nonsense"])
def test_unsupported_schemes(url: str) -> None:
    with pytest.raises(StoreConfigError, match="unsupported store URL"):
        parse_store_url(url)
