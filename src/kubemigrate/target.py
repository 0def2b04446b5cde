"""From settings to a reachable database.

`database(settings)` answers "which PostgreSQL, at which URL" for the configured target:

- `local`: `DATABASE_URL` (or the `KUBEMIGRATE_DB_*` parts) when set, else the embedded
  PostgreSQL, started on demand;
- `external`: `DATABASE_URL`, the parts, or the credentials in a Kubernetes Secret, reached
  directly;
- `k8s`: the credentials in a Kubernetes Secret, reached through `kubectl port-forward`.

What is opened (a tunnel) is opened once per process, that is once per `inv` invocation, and
kept in the `Session` until the process ends, so chained tasks share it.
"""

from __future__ import annotations

import atexit
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kubemigrate.errors import DatabaseError, SettingsError
from kubemigrate.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import URL, Connection

    from kubemigrate.tunnel import PortForward

APPLICATION_NAME = "kubemigrate"


@dataclass(frozen=True)
class Database:
    """A database to connect to. `url` holds the password; `shown` is safe to print."""

    url: URL
    environment: str
    connect_timeout: float
    tunnel: PortForward | None = None
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


def parse_url(text: str, origin: str) -> URL:
    """A SQLAlchemy URL for PostgreSQL with psycopg2; the text is never echoed on error."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(text)
    except (ArgumentError, ValueError):
        raise SettingsError(
            f"the database URL from {origin} is not a valid URL; expected "
            "postgresql://USER:PASSWORD@HOST:PORT/DATABASE (percent-encode special characters)"
        ) from None
    if url.get_backend_name() not in ("postgresql", "postgres"):
        raise SettingsError(
            f"the database URL from {origin} is for {url.get_backend_name()!r}; "
            "kubemigrate supports PostgreSQL only"
        )
    return url.set(drivername="postgresql+psycopg2")


def url_from_parts(
    *, host: str, port: int, user: str | None, password: str | None, database: str
) -> URL:
    """A URL built from separate values; any character in the password is fine."""
    from sqlalchemy import URL

    return URL.create(
        "postgresql+psycopg2",
        username=user,
        password=password,
        host=host,
        port=port,
        database=database,
    )


class Session:
    """What one `inv` invocation opened: databases by environment, and their tunnels."""

    def __init__(self) -> None:
        self.stack = ExitStack()
        self.databases: dict[tuple[str, str], Database] = {}

    def database(self, settings: Settings) -> Database:
        key = (settings.environment, settings.target)
        known = self.databases.get(key)
        if known is None or known.lost():  # a dropped tunnel is opened again for the next task
            self.databases[key] = _resolve(settings, self.stack)
        return self.databases[key]

    def close(self) -> None:
        self.databases.clear()
        self.stack.close()


_session: Session | None = None


def session() -> Session:
    """The session of this process, closed when the process exits."""
    global _session
    if _session is None:
        _session = Session()
        atexit.register(close_session)
    return _session


def close_session() -> None:
    """Close everything the session opened (tunnels); safe to call more than once."""
    global _session
    if _session is not None:
        current, _session = _session, None
        current.close()


def database(settings: Settings) -> Database:
    """The database for `settings`, opening what it needs once per process."""
    return session().database(settings)


def _resolve(settings: Settings, stack: ExitStack) -> Database:
    tunnel = pod = None
    if settings.target == "k8s":
        from kubemigrate.cluster import tunnelled_url

        url, tunnel, pod = tunnelled_url(settings, stack)
    else:
        url = _direct_url(settings)
    return Database(
        url=url,
        environment=settings.environment,
        connect_timeout=settings.connect_timeout,
        tunnel=tunnel,
        pod=pod,
    )


def _direct_url(settings: Settings) -> URL:
    if settings.database_url:
        return parse_url(settings.database_url, settings.source("database_url"))
    if settings.db_host:
        return url_from_parts(
            host=settings.db_host,
            port=settings.db_port,
            user=settings.db_user,
            password=settings.db_password,
            database=settings.db_name,
        )
    if settings.target == "local":
        return _embedded_url(settings)
    from kubemigrate.cluster import external_url

    return external_url(settings)


def _embedded_url(settings: Settings) -> URL:
    from kubemigrate.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(settings.path(settings.data_dir))
    created = not server.initialized
    was_running = server.status().running
    server.start()
    server.ensure_database(settings.db_name)
    url = parse_url(server.url(settings.db_name), "the embedded PostgreSQL")
    if not was_running:
        state = "created and started" if created else "started"
        print(
            f"Embedded PostgreSQL {state} in {server.data_dir} ({url.render_as_string()})",
            file=sys.stderr,
        )
    return url


@contextmanager
def connect(db: Database) -> Iterator[Connection]:
    """A connection to `db` (no pool); failing to connect is a `DatabaseError`."""
    import sqlalchemy as sa

    from kubemigrate.interrupts import use_interruptible_waits

    use_interruptible_waits(db.connect_timeout)
    engine = sa.create_engine(
        db.url,
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


def driver_message(exc: BaseException) -> str:
    """The first meaningful line of a database driver error, without SQLAlchemy's decoration."""
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).strip().splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("FATAL:", "ERROR:")):
            return line.split(":", 1)[1].strip()
    return lines[0] if lines else type(orig).__name__
