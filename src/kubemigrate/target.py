"""From settings to a reachable database: `database(settings)`.

`_open` decides it in one `match settings.target`, read top to bottom:

- `local`: `DATABASE_URL` (or the `KUBEMIGRATE_DB_*` parts) when set, else the embedded
  PostgreSQL, started on demand;
- `external`: `DATABASE_URL` or the parts, else the credentials in a Kubernetes Secret, host
  included, reached directly;
- `k8s`: `kubemigrate.cluster.reach` opens `kubectl port-forward` and reads the Secret at
  once; the credentials come from the Secret (else from the settings), the host and port are
  the tunnel's end.

Which credentials win is `kubemigrate.credentials.credentials`' one decision. `connect` gives a
SQLAlchemy connection (for Alembic and most tasks); `connect_plainly` a bare psycopg2 one, with
the same parameters, for reads that should not pay SQLAlchemy's import. What is opened
(a tunnel) is opened once per process, that is once per `inv` invocation, and kept in the
`Session` until the process ends, so chained tasks share it.
"""

from __future__ import annotations

import atexit
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kubemigrate.credentials import credentials, from_parts
from kubemigrate.errors import DatabaseError, SettingsError
from kubemigrate.settings import Settings
from kubemigrate.urls import APPLICATION_NAME, URL, libpq_parameters, parse_url

if TYPE_CHECKING:
    import psycopg2.extensions
    from sqlalchemy import Connection

    from kubemigrate.tunnel import PortForward


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


class Session:
    """What one `inv` invocation opened: databases by environment, and their tunnels."""

    def __init__(self) -> None:
        self.stack = ExitStack()
        self.databases: dict[tuple[str, str], Database] = {}

    def database(self, settings: Settings) -> Database:
        key = (settings.environment, settings.target)
        known = self.databases.get(key)
        if known is None or known.lost():  # a dropped tunnel is opened again for the next task
            self.databases[key] = _open(settings, self.stack)
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


def server_major(settings: Settings) -> int:
    """The major version of the settings' database server (18 for 18.1)."""
    with connect_plainly(database(settings)) as connection:
        return int(connection.server_version) // 10000


def known_passwords() -> list[str]:
    """The passwords of the databases this process resolved: never to be shown."""
    if _session is None:
        return []
    return [db.url.password for db in _session.databases.values() if db.url.password]


def database(settings: Settings) -> Database:
    """The database for `settings`, opening what it needs once per process."""
    return session().database(settings)


def _open(settings: Settings, stack: ExitStack) -> Database:
    """The database the settings name, opening what it needs (kept open by `stack`)."""
    tunnel = pod = None
    match settings.target:
        case "local":
            url = credentials(settings) or _embedded_url(settings)
        case "external":
            url = credentials(settings) or _external_url(settings)
        case "k8s":
            from kubemigrate import cluster

            reached = cluster.reach(settings, stack)
            tunnel, pod = reached.tunnel, reached.pod
            found = credentials(settings, reached.secret) or from_parts(settings)
            url = found.set(host="127.0.0.1", port=reached.port)
        case _:
            raise SettingsError(f"unknown target {settings.target!r}")
    return Database(
        url=url,
        environment=settings.environment,
        connect_timeout=settings.connect_timeout,
        tunnel=tunnel,
        pod=pod,
    )


def _external_url(settings: Settings) -> URL:
    """The external database's URL from the Secret (host included)."""
    from kubemigrate.kube import Kubectl

    if not settings.db_secret:
        raise SettingsError(
            f"target external (environment {settings.environment}) needs DATABASE_URL, "
            "KUBEMIGRATE_DB_HOST or KUBEMIGRATE_DB_SECRET"
        )
    secret = Kubectl.from_settings(settings).secret(settings.db_secret)
    url = credentials(settings, secret)
    assert url is not None
    if not url.host:
        raise SettingsError(
            f"Secret {settings.db_secret!r} has no key {settings.secret_host_key!r} for the "
            "external database's host; add it or set KUBEMIGRATE_DB_HOST"
        )
    return url


def _embedded_url(settings: Settings) -> URL:
    from kubemigrate.embedded import EmbeddedPostgres

    server = EmbeddedPostgres.for_settings(settings)
    created = not server.initialized
    was_running = server.status().running
    server.start()
    server.ensure_database(settings.db_name)
    # kubemigrate built this URL: {url} in KUBEMIGRATE_EXPORT gets KUBEMIGRATE_DRIVER's driver
    url = parse_url(server.url(settings.db_name), "the embedded PostgreSQL").set(named_driver=None)
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

    from kubemigrate.interrupts import use_interruptible_waits

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
