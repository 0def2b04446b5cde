"""From settings to a reachable database: `database(settings)`.

`_open` decides it in one `match settings.target`, read top to bottom:

- `local`: `DATABASE_URL` (or the `KUBEMIGRATE_DB_*` parts) when set, else the embedded
  PostgreSQL, started on demand;
- `external`: `DATABASE_URL` or the parts, else the credentials in a Kubernetes Secret, host
  included, reached directly;
- `k8s`: `kubemigrate.kubernetes.reach` opens `kubectl port-forward` and reads the Secret at
  once; the credentials come from the Secret (else from the settings), the host and port are
  the tunnel's end.

Which credentials win is `kubemigrate.target.credentials`' one decision; connecting to the
`Database` found is `kubemigrate.postgres.connections`'. What is opened (a tunnel) is opened once
per process, that is once per `inv` invocation, and kept in the `Session` until the process ends, so
chained tasks share it.
"""

from __future__ import annotations

import atexit
import sys
from contextlib import ExitStack

from kubemigrate.errors import SettingsError
from kubemigrate.postgres.connections import Database, connect_plainly
from kubemigrate.postgres.urls import URL, parse_url
from kubemigrate.settings.declared import Settings
from kubemigrate.target.credentials import credentials, from_parts


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
            from kubemigrate.kubernetes import reach

            reached = reach.reach(settings, stack)
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
    from kubemigrate.kubernetes.kubectl import Kubectl

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
    from kubemigrate.postgres.embedded import EmbeddedPostgres

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
