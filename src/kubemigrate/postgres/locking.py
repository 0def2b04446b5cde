"""One migration at a time per database: a PostgreSQL advisory lock, and session timeouts.

Commands that change the schema or its revision (upgrade, downgrade, stamp, restore) hold a
session-level advisory lock for their whole run, on a connection of its own in autocommit mode,
so that it survives `autocommit_block` (CREATE INDEX CONCURRENTLY) and waiters sit outside any
transaction. A second run waits up to `KUBEMIGRATE_LOCK_WAIT` seconds, then either finds
nothing left to do or fails naming who holds the lock.

Migration sessions also get `lock_timeout` and `statement_timeout`, so a migration queued
behind the application's locks fails instead of blocking the application.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from kubemigrate.errors import DatabaseError

if TYPE_CHECKING:
    import psycopg2.extensions
    from sqlalchemy import Connection

    from kubemigrate.postgres.connections import Database
    from kubemigrate.settings.declared import Settings

# A stable, positive 63-bit key (positive, so pg_locks' two 32-bit halves rebuild it); advisory
# locks are per database, so one key serves every project.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"kubemigrate:migrations").digest()[:8], "big") >> 1
POLL_INTERVAL = 0.05
CHECK_INTERVAL_SINCE = 140000  # client_connection_check_interval exists from PostgreSQL 14

HOLDER = """
SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local'),
       to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"')
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.database = (
    SELECT oid FROM pg_database WHERE datname = current_database())
  AND ((l.classid::bigint << 32) | l.objid::bigint) = %(key)s
LIMIT 1
"""


@contextmanager
def migration_lock(db: Database, wait: float) -> Iterator[psycopg2.extensions.connection]:
    """Hold the migration lock of `db` for the duration of the block; gives the lock's
    connection (its `server_version` is the server's version number, e.g. 180001), where the
    holder may read and write under the lock (the ledger does).

    The lock's connection is a bare psycopg2 one in autocommit mode (`connect_plainly`): three
    statements need no SQLAlchemy, and it is the first connection a migration opens.
    """
    import psycopg2

    from kubemigrate.postgres.connections import connect_plainly, driver_message

    with connect_plainly(db) as connection:
        connection.autocommit = True
        try:
            _acquire(connection, wait)
        except psycopg2.Error as exc:
            why = db.lost(within=1) or f"the database failed: {driver_message(exc)}"
            raise DatabaseError(
                f"{why}, while taking the migration lock; nothing was changed"
            ) from None
        try:
            yield connection
        finally:
            _release(connection)


def _release(connection: psycopg2.extensions.connection) -> None:
    """Unlock; a connection that is already gone released the lock with its session."""
    import psycopg2

    with contextlib.suppress(psycopg2.Error):
        _one(connection, "SELECT pg_advisory_unlock(%(key)s)")


def _acquire(connection: psycopg2.extensions.connection, wait: float) -> None:
    deadline = time.monotonic() + wait
    told = False
    while _one(connection, "SELECT pg_try_advisory_lock(%(key)s)") != (True,):
        holder = _holder(connection)
        if time.monotonic() >= deadline:
            raise DatabaseError(
                f"another migration holds the lock ({holder}); waited {wait:g}s. Try again when "
                "it has finished, or raise KUBEMIGRATE_LOCK_WAIT"
            )
        if not told:
            print(f"Waiting for the migration lock held by {holder}...", file=sys.stderr)
            told = True
        time.sleep(POLL_INTERVAL)


def _holder(connection: psycopg2.extensions.connection) -> str:
    row = _one(connection, HOLDER)
    if row is None:
        return "a session that just released it"
    pid, application, client, since = row
    return f"pid {pid}, {application or 'unnamed application'} from {client}, connected {since}"


def _one(connection: psycopg2.extensions.connection, sql: str) -> tuple[Any, ...] | None:
    """The first row of `sql`, run with the lock's key."""
    with connection.cursor() as cursor:
        cursor.execute(sql, {"key": LOCK_KEY})
        row = cursor.fetchone()
    return tuple(row) if row is not None else None


def session_settings(
    *, lock_timeout: float, statement_timeout: float, server_version: int
) -> dict[str, str]:
    """The settings of a migration session on a server of `server_version` (e.g. 180001):
    the timeouts (0 disables one) and, from PostgreSQL 14 on, a check every second that the
    client is still there, so that a killed task's statement ends (and its locks go) at once."""
    values = {
        "lock_timeout": milliseconds(lock_timeout),
        "statement_timeout": milliseconds(statement_timeout),
    }
    if server_version >= CHECK_INTERVAL_SINCE:
        values["client_connection_check_interval"] = "1000ms"
    return values


def migration_session(settings: Settings, server_version: int) -> dict[str, str]:
    """The session settings of a migration, as `settings` configure it, on a server of
    `server_version`."""
    return session_settings(
        lock_timeout=settings.lock_timeout,
        statement_timeout=settings.statement_timeout,
        server_version=server_version,
    )


def set_session(connection: Connection, values: dict[str, str]) -> None:
    """Set `values` on a SQLAlchemy connection of any driver (psycopg2, psycopg 3, asyncpg
    through `run_sync`), with SQL rather than libpq's PGOPTIONS, which asyncpg never reads.

    A connection outside a transaction is left outside one (the settings are committed), so
    that Alembic still runs each migration in a transaction of its own; inside one, they hold
    for that transaction, which is the migrations'.
    """
    from sqlalchemy import text

    began = connection.in_transaction()
    for name, value in values.items():
        connection.execute(
            text("SELECT set_config(:name, :value, false)"), {"name": name, "value": value}
        )
    if not began:
        connection.commit()


def milliseconds(seconds: float) -> str:
    """A PostgreSQL duration setting: 1.5 -> '1500ms'."""
    return f"{int(seconds * 1000)}ms"
