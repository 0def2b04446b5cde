"""What the database records of its migrations: the revisions in Alembic's version table
(`current_heads`), read on any connection (SQLAlchemy's or a bare psycopg2 one), and whether
they are the migrations' head."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubemigrate.errors import MigrationError

if TYPE_CHECKING:
    import psycopg2.extensions
    from sqlalchemy import Connection

    from kubemigrate.migrations.revisions import Graph


VERSION_TABLE = "alembic_version"  # Alembic's default, which migrations/env.py keeps


def current_heads(connection: Connection | psycopg2.extensions.connection) -> tuple[str, ...]:
    """The revisions recorded in the database's alembic_version table (none before the first
    upgrade).

    Read with plain SQL rather than through Alembic's MigrationContext, so that the tasks that
    only need the revision (backup, restore, release) do not pay Alembic's import (about 0.1 s).
    Like Alembic, it looks for the table on the search path. `connection` is SQLAlchemy's or,
    for `inv db.current`, a bare psycopg2 one.
    """
    found = _rows(connection, f"SELECT to_regclass('{VERSION_TABLE}')")
    if found[0][0] is None:
        return ()
    rows = _rows(connection, f"SELECT version_num FROM {VERSION_TABLE}")
    return tuple(str(version) for (version,) in rows)


def _rows(
    connection: Connection | psycopg2.extensions.connection, sql: str
) -> list[tuple[Any, ...]]:
    """The rows of `sql` on a SQLAlchemy connection or a bare psycopg2 one."""
    import psycopg2.extensions

    if isinstance(connection, psycopg2.extensions.connection):
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())
    return [tuple(row) for row in connection.exec_driver_sql(sql)]


def not_at_head(
    graph: Graph, connection: Connection | psycopg2.extensions.connection
) -> str | None:
    """None when the database is at the migrations' head(s), else where it is instead."""
    wanted = set(graph.heads())
    have = set(current_heads(connection))
    if have == wanted:
        return None
    at = ", ".join(sorted(have)) or "base (empty)"
    return f"at {at}, not at head ({', '.join(sorted(wanted))})"


def to_head(graph: Graph) -> str:
    """What brings a database to head: the upgrade, after merging the heads if there are
    several (an upgrade to "head" refuses them)."""
    if len(graph.heads()) > 1:
        return "merge the heads with `inv db.merge`, then run `inv db.upgrade`"
    return "run `inv db.upgrade`"


def require_head(graph: Graph, connection: Connection | psycopg2.extensions.connection) -> None:
    gap = not_at_head(graph, connection)
    if gap:
        raise MigrationError(f"the database is {gap}; {to_head(graph)} first")
    connection.rollback()  # end the read's implicit transaction before Alembic starts its own
