"""Where the database's URL and credentials come from, decided in one function.

`credentials(settings, secret)` answers in this order:

1. the Secret's values, when a Secret was read (`KUBEMIGRATE_DB_SECRET`): one key holding a
   whole URL (`KUBEMIGRATE_SECRET_URL_KEY`), or user, password, database and, optionally, host
   and port under the `KUBEMIGRATE_SECRET_*_KEY` names;
2. `DATABASE_URL`;
3. the `KUBEMIGRATE_DB_*` parts, when a host is set.

Secret values stay in memory: they go into the URL handed to the database driver and, through
`kubemigrate.postgres.urls.libpq_environment`, to the one child that needs them; never into a
command line, a file or a message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubemigrate.errors import ClusterError
from kubemigrate.postgres.urls import URL, parse_url, url_from_parts
from kubemigrate.settings.kinds import host_problem

if TYPE_CHECKING:
    from kubemigrate.kubernetes.kubectl import Secret
    from kubemigrate.settings.declared import Settings


def credentials(settings: Settings, secret: Secret | None = None) -> URL | None:
    """The database's URL from the Secret's values, else from the settings; None when neither
    names a database."""
    if secret is not None:
        return _from_secret(settings, secret)
    if settings.database_url:
        return parse_url(settings.database_url, settings.source("database_url"))
    if settings.db_host:
        return from_parts(settings)
    return None


def from_parts(settings: Settings) -> URL:
    """The URL of the `KUBEMIGRATE_DB_*` parts (the host may be empty: a tunnel's end then
    replaces it)."""
    return url_from_parts(
        host=settings.db_host or "",
        port=settings.db_port,
        user=settings.db_user,
        password=settings.db_password,
        database=settings.db_name,
    )


def _from_secret(settings: Settings, secret: Secret) -> URL:
    origin = f"Secret {secret.name!r}"

    def need(key: str) -> str:
        if key not in secret.values:
            keys = ", ".join(sorted(secret.values)) or "none"
            raise ClusterError(
                f"{origin} in {secret.where} has no key {key!r} (its keys: {keys}); fix the "
                "Secret or the KUBEMIGRATE_SECRET_*_KEY settings"
            )
        return secret.values[key]

    if settings.secret_url_key:
        return parse_url(need(settings.secret_url_key), f"{origin} key {settings.secret_url_key!r}")
    return url_from_parts(
        host=_secret_host(settings, secret, origin),
        port=_secret_port(settings, secret, origin),
        user=need(settings.secret_user_key),
        password=need(settings.secret_password_key),
        database=secret.values.get(settings.secret_database_key, settings.db_name),
    )


def _secret_host(settings: Settings, secret: Secret, origin: str) -> str:
    """The Secret's host, else `KUBEMIGRATE_DB_HOST`; one that cannot be a host (it holds a
    password, as `PASSWORD@HOST` does) is refused without showing it."""
    host = secret.values.get(settings.secret_host_key, settings.db_host or "")
    problem = host_problem(host) if host else None
    if problem:
        raise ClusterError(
            f"{origin} key {settings.secret_host_key!r} is not a host: {problem}; fix the Secret"
        )
    return host


def _secret_port(settings: Settings, secret: Secret, origin: str) -> int:
    """The Secret's port (1-65535), else `KUBEMIGRATE_DB_PORT`."""
    text = secret.values.get(settings.secret_port_key, str(settings.db_port))
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise ClusterError(
            f"{origin} key {settings.secret_port_key!r} is not a port (1-65535); fix the Secret"
        )
    return port
