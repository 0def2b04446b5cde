"""Connecting to a database: the `Database` found for the settings (its URL, the tunnel it goes
through), a SQLAlchemy connection to it (`connect`, for Alembic and most tasks) or a bare
psycopg2 one (`connect_plainly`, with the parameters pg_dump gets, for reads that should not pay
SQLAlchemy's import); failing to connect is one `DatabaseError` line (`driver_message`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from kubemigrate.errors import DatabaseError
from kubemigrate.postgres.urls import APPLICATION_NAME, URL, libpq_parameters

if TYPE_CHECKING:
    import psycopg2.extensions
    from sqlalchemy import Connection

    from kubemigrate.postgres.clients import Kubectl


class Tunnel(Protocol):
    """What a connection's tunnel (`kubectl port-forward`) tells: whether it is gone, and why;
    and the kubectl it runs, which reaches the database's pod too."""

    @property
    def kubectl(self) -> Kubectl: ...

    def exited(self, within: float = 0) -> bool: ...

    def exit_reason(self) -> str: ...


@dataclass(frozen=True)
class Database:
    """A database to connect to. `url` holds the password; `shown` is safe to print."""

    url: URL
    environment: str
    connect_timeout: float
    tunnel: Tunnel | None = None  # k8s: the port-forward the connection goes through
    pod: str | None = None  # k8s: a Ready database pod, found when the tunnel was opened

    def lost(self, within: float = 0) -> str | None:
        """Why the connection to the cluster is gone, if the tunnel's kubectl has exited
        (waiting up to `within` seconds for it to be gone)."""
        if self.tunnel is None or not self.tunnel.exited(within):
            return None
        return (
            f"lost the connection to the cluster: kubectl port-forward exited "
            f"({self.tunnel.exit_reason()})"
        )

    @property
    def shown(self) -> str:
        return self.url.render_as_string(hide_password=True)

    @property
    def name(self) -> str:
        return self.url.database or ""


@contextmanager
def connect(db: Database) -> Iterator[Connection]:
    """A connection to `db` (no pool); failing to connect is a `DatabaseError`."""
    import sqlalchemy as sa

    from kubemigrate.process.interrupts import use_interruptible_waits

    use_interruptible_waits(db.connect_timeout)
    engine = sa.create_engine(
        db.url.sqlalchemy(),
        poolclass=sa.pool.NullPool,
        connect_args={
            "connect_timeout": max(1, round(db.connect_timeout)),
            "application_name": APPLICATION_NAME,
        },
    )
    try:
        try:
            connection = engine.connect()
        except sa.exc.OperationalError as exc:
            raise DatabaseError(f"cannot connect to {db.shown}: {driver_message(exc)}") from None
        with connection:
            yield connection
    finally:
        engine.dispose()


@contextmanager
def connect_plainly(db: Database) -> Iterator[psycopg2.extensions.connection]:
    """A bare psycopg2 connection to `db`, for reads that need neither SQLAlchemy nor Alembic
    (`inv db.current`): libpq gets the parameters pg_dump gets, through the same interruptible
    waits, and a failure to connect is the same `DatabaseError`."""
    import psycopg2

    from kubemigrate.process.interrupts import use_interruptible_waits

    use_interruptible_waits(db.connect_timeout)
    try:
        connection = psycopg2.connect(
            **libpq_parameters(db.url, connect_timeout=db.connect_timeout)
        )
    except psycopg2.OperationalError as exc:
        raise DatabaseError(f"cannot connect to {db.shown}: {driver_message(exc)}") from None
    try:
        yield connection
    finally:
        connection.close()


def driver_message(exc: BaseException) -> str:
    """The first meaningful line of a database driver error, without SQLAlchemy's decoration."""
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).strip().splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("FATAL:", "ERROR:")):
            return line.split(":", 1)[1].strip()
    return lines[0] if lines else type(orig).__name__
