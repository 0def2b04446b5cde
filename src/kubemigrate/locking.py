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

    from kubemigrate.target import Database

# A stable, positive 63-bit key (positive, so pg_locks' two 32-bit halves rebuild it); advisory
# locks are per database, so one key serves every project.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"kubemigrate:migrations").digest()[:8], "big") >> 1
POLL_INTERVAL = 0.05

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
def migration_lock(db: Database, wait: float) -> Iterator[int]:
    """Hold the migration lock of `db` for the duration of the block; gives the server's
    version number (`server_version_num`, e.g. 180001).

    The lock's connection is a bare psycopg2 one in autocommit mode (`connect_plainly`): three
    statements need no SQLAlchemy, and it is the first connection a migration opens.
    """
    import psycopg2

    from kubemigrate.target import connect_plainly, driver_message

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
            yield int(connection.server_version)
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


def set_timeouts(connection: Connection, *, lock_timeout: float, statement_timeout: float) -> None:
    """Session timeouts for a migration connection (0 disables one)."""
    connection.exec_driver_sql(
        "SELECT set_config('lock_timeout', %(lock)s, false), "
        "set_config('statement_timeout', %(statement)s, false)",
        {"lock": milliseconds(lock_timeout), "statement": milliseconds(statement_timeout)},
    )
    connection.commit()


def milliseconds(seconds: float) -> str:
    """A PostgreSQL duration setting: 1.5 -> '1500ms'."""
    return f"{int(seconds * 1000)}ms"
