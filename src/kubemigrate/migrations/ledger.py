"""The ledger: a table beside Alembic's version table, one row per migration step applied.

Alembic keeps only the current head. The ledger (`kubemigrate_history`) keeps, for every step,
the revision, the action (upgrade, downgrade, stamp; baseline and repair, which kubemigrate
writes itself), the sha256 of the revision's file (`checksum`), when it started and finished,
who ran it, from where and from which commit (`kubemigrate.migrations.provenance`), and the heads
before and after. A step's row is written in the step's own transaction
(`kubemigrate.migrations.ledger_hook`), so a migration that rolls back leaves none.

The first command that changes the database creates the table, under the migration lock, on
env.py's connection once env.py has connected where it should; on a database that Alembic
already migrated, with a `baseline` row per applied revision, from the files as they are
(`db.repair` may create it too). Rows are read and written here on either kind of connection:
kubemigrate's own psycopg2 one, or the SQLAlchemy connection of the project's env.py (any
driver).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubemigrate.errors import DatabaseError
from kubemigrate.models import LEDGER_TABLE

if TYPE_CHECKING:
    from kubemigrate.migrations.provenance import Facts
    from kubemigrate.migrations.revisions import Graph
    from kubemigrate.settings.declared import Settings

ACTIONS = ("upgrade", "downgrade", "stamp", "baseline", "repair")
# The actions after which a row's checksum is the accepted content of its file.
ACCEPTING = ("upgrade", "stamp", "baseline", "repair")
COLUMNS = (
    "revision",
    "action",
    "checksum",
    "started_at",
    "finished_at",
    "duration_ms",
    "applied_by",
    "host",
    "environment",
    "kubemigrate_version",
    "git_commit",
    "heads_before",
    "heads_after",
    "run_id",
    "reason",
)
CREATE = """
CREATE TABLE IF NOT EXISTS {table} (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    revision text NOT NULL,
    action text NOT NULL CHECK (action IN ('upgrade', 'downgrade', 'stamp', 'baseline', 'repair')),
    checksum text,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    duration_ms bigint NOT NULL,
    applied_by text NOT NULL,
    host text NOT NULL,
    environment text NOT NULL,
    kubemigrate_version text NOT NULL,
    git_commit text,
    heads_before text NOT NULL,
    heads_after text NOT NULL,
    run_id text NOT NULL,
    reason text
)"""
# One statement per call: asyncpg prepares each, and a prepared statement holds one command.
COMMENT = (
    "COMMENT ON TABLE {table} IS 'kubemigrate: one row per migration step applied "
    "(inv db.history --applied, inv db.validate)'"
)
INSERT = (
    f"INSERT INTO {{table}} ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join(':' + column for column in COLUMNS)})"
)


@dataclass(frozen=True)
class Table:
    """Where the ledger is: its schema (None: the first on the search path, where Alembic puts
    its version table) and name."""

    schema: str | None = None
    name: str = LEDGER_TABLE

    @classmethod
    def of(cls, settings: Settings) -> Table | None:
        """The settings' ledger; None when it is off (KUBEMIGRATE_LEDGER=false)."""
        return cls(settings.ledger_schema) if settings.ledger else None

    @property
    def sql(self) -> str:
        """The table's name, quoted, as SQL."""
        name = _quoted(self.name)
        return f"{_quoted(self.schema)}.{name}" if self.schema else name


@dataclass(frozen=True)
class Row:
    """One row of the ledger."""

    revision: str
    action: str
    checksum: str | None
    started_at: datetime
    finished_at: datetime
    duration_ms: int
    applied_by: str
    host: str
    environment: str
    kubemigrate_version: str
    git_commit: str | None
    heads_before: str
    heads_after: str
    run_id: str
    reason: str | None = None

    @classmethod
    def of(
        cls,
        revision: str,
        action: str,
        *,
        checksum: str | None,
        facts: Facts,
        started: datetime,
        finished: datetime,
        before: tuple[str, ...] | set[str],
        after: tuple[str, ...] | set[str],
        reason: str | None = None,
    ) -> Row:
        return cls(
            revision=revision,
            action=action,
            checksum=checksum,
            started_at=started,
            finished_at=finished,
            duration_ms=max(0, round((finished - started).total_seconds() * 1000)),
            applied_by=facts.who,
            host=facts.host,
            environment=facts.environment,
            kubemigrate_version=facts.version,
            git_commit=facts.commit,
            heads_before=heads_text(before),
            heads_after=heads_text(after),
            run_id=facts.run_id,
            reason=reason,
        )

    def values(self) -> dict[str, Any]:
        return {column: getattr(self, column) for column in COLUMNS}


def checksum(path: Path | str) -> str | None:
    """The sha256 of a revision file with its line endings as LF (a checkout with CRLF is the
    same file); None when there is no such file."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    return hashlib.sha256(data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")).hexdigest()


def heads_text(heads: tuple[str, ...] | set[str] | list[str]) -> str:
    """Heads as the ledger keeps them: sorted, comma-separated; empty for base."""
    return ",".join(sorted(heads))


def now() -> datetime:
    return datetime.now(UTC)


def utc(moment: datetime) -> str:
    """A time of the ledger as people read it: '2026-12-03 13:16 UTC'."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def exists(connection: Any, table: Table) -> bool:
    """Whether the ledger table is there."""
    return _rows(connection, "SELECT to_regclass(:name)", {"name": table.sql})[0][0] is not None


def create(connection: Any, table: Table, rows: list[Row]) -> None:
    """Create the ledger with its first `rows`, on either kind of connection, in its current
    transaction (the caller's to end)."""
    _execute(connection, CREATE.format(table=table.sql), {})
    _execute(connection, COMMENT.format(table=table.sql), {})
    append(connection, table, rows)


def cannot_create(table: Table, why: str) -> DatabaseError:
    """The failure to create the ledger, with the three ways out."""
    schema = f"schema {table.schema}" if table.schema else "the first schema on the search path"
    return DatabaseError(
        f"cannot create the ledger table {table.name} in {schema}: {why}; grant this user "
        "CREATE there, set KUBEMIGRATE_LEDGER_SCHEMA to a schema it may write, or turn the "
        "ledger off with KUBEMIGRATE_LEDGER=false. Nothing was migrated"
    )


def baseline(graph: Graph, heads: tuple[str, ...], facts: Facts) -> list[Row]:
    """A `baseline` row for every revision `heads` include (themselves and their ancestors),
    oldest first, with the checksum of its file as it is now."""
    applied = set(heads) | {a for head in heads for a in graph.ancestors(head)}
    ordered = [r for r in graph.chain(None) if r in applied]
    ordered += sorted(applied - set(ordered))  # recorded, but with no file: checksum None
    at = now()
    return [
        Row.of(
            revision,
            "baseline",
            checksum=checksum(graph.paths[revision]) if revision in graph.paths else None,
            facts=facts,
            started=at,
            finished=at,
            before=heads,
            after=heads,
        )
        for revision in ordered
    ]


def append(connection: Any, table: Table, rows: list[Row]) -> None:
    """Add `rows`, on either kind of connection, in its current transaction."""
    for row in rows:
        _execute(connection, INSERT.format(table=table.sql), row.values())


def read(connection: Any, table: Table, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The ledger's rows, newest first (all, or the newest `limit`); none when it is not
    there."""
    if not exists(connection, table):
        return []
    sql = f"SELECT id, {', '.join(COLUMNS)} FROM {table.sql} ORDER BY id DESC"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    names = ("id", *COLUMNS)
    return [dict(zip(names, row, strict=True)) for row in _rows(connection, sql, {})]


def heads_before_run(connection: Any, table: Table, run_id: str) -> str | None:
    """The heads before the first step the run `run_id` applied (comma-separated, empty for
    base); None when it applied none, or there is no ledger."""
    if not exists(connection, table):
        return None
    sql = f"SELECT heads_before FROM {table.sql} WHERE run_id = :run ORDER BY id LIMIT 1"
    found = _rows(connection, sql, {"run": run_id})
    return str(found[0][0]) if found else None


def _quoted(name: str | None) -> str:
    return '"' + str(name).replace('"', '""') + '"'


PARAMETER = re.compile(r"(?<![:\w]):(\w+)")


def _rows(connection: Any, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of `sql` (parameters written `:name`) on a SQLAlchemy connection or a bare
    psycopg2 one (none for a statement that returns none)."""
    import psycopg2.extensions

    if isinstance(connection, psycopg2.extensions.connection):
        with connection.cursor() as cursor:
            cursor.execute(PARAMETER.sub(r"%(\1)s", sql), parameters)
            return [tuple(row) for row in cursor.fetchall()] if cursor.description else []
    from sqlalchemy import text

    result = connection.execute(text(sql), parameters)
    return [tuple(row) for row in result] if result.returns_rows else []


def _execute(connection: Any, sql: str, parameters: dict[str, Any]) -> None:
    _rows(connection, sql, parameters)
