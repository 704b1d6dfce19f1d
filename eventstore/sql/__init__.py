"""The store's SQL: SQLite and PostgreSQL through `eventsourcing` and psycopg.

The only modules of entityflow that import `eventsourcing`, psycopg or psycopg_pool (a
ruff rule holds the line). Read ``store.py`` first: :class:`Store` is the one interface
the rest of entityflow uses; ``sqlite_recorder.py`` and ``pg_recorder.py`` hold the SQL
of a batch commit.
"""
