"""Schema upkeep as raw DDL: the one place of the services' schema code that writes SQL text.

No migration tool yet: tables are made with ``metadata.create_all``; what newer code added to a table an
older version made is added here (nullable columns, indexes), old indexes are dropped here, and schema
creation by replicas starting at once is serialised here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.schema import CreateColumn


async def lock_schema(conn: AsyncConnection) -> None:
    """Serialise schema creation across replicas starting at once (a PostgreSQL advisory lock held to the
    end of the transaction); two concurrent ``CREATE TABLE`` on an empty database otherwise collide."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('est:schema'))"))


def add_missing_columns(conn: Connection, table: Table, names: Iterable[str] | None = None) -> list[str]:
    """Add the columns of ``table`` (all its nullable ones, or ``names``) that an older version's table lacks;
    returns the names added. A table that does not exist yet is left to ``create_all``."""
    inspector = inspect(conn)
    if not inspector.has_table(table.name):
        return []
    have = {c["name"] for c in inspector.get_columns(table.name)}
    wanted = list(names) if names is not None else [c.name for c in table.columns if c.nullable]
    added = []
    for name in wanted:
        if name not in have:
            ddl = CreateColumn(table.c[name]).compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {ddl}")
            added.append(name)
    return added


def add_missing_indexes(conn: Connection, table: Table, names: Iterable[str]) -> None:
    """Create the named indexes of ``table`` that an older version's table lacks."""
    inspector = inspect(conn)
    if not inspector.has_table(table.name):
        return
    have = {ix["name"] for ix in inspector.get_indexes(table.name)}
    wanted = set(names)
    for ix in table.indexes:
        if ix.name in wanted and ix.name not in have:
            ix.create(conn)


def drop_indexes(conn: Connection, names: Iterable[str]) -> None:
    """Drop indexes an older version made and nothing reads any more."""
    for name in names:
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")


async def ping(engine: AsyncEngine) -> None:
    """One round trip to the database (readiness)."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


def dialect_of(conn: Any) -> str:
    """``sqlite`` or ``postgresql``."""
    return str(conn.dialect.name)
