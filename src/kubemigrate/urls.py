"""Database URLs: parsing one, building one from parts, and the libpq environment of one.

A URL is a SQLAlchemy `URL` with the psycopg2 driver. Its text is never echoed in an error (it
may hold a password); `Database.shown` is the masked form for messages.

`libpq_environment` is the one way a URL reaches libpq's own programs (pg_dump, pg_restore):
every part and every connection parameter of the URL's query (`host` given as a socket
directory, `sslmode`, `sslrootcert`, `options`...) becomes the matching PG* variable, so the
child connects exactly as the driver does, password included, without a command-line argument.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubemigrate.errors import SettingsError

if TYPE_CHECKING:
    from sqlalchemy import URL

APPLICATION_NAME = "kubemigrate"
DRIVER = "postgresql+psycopg2"

# libpq's connection parameters and the environment variables that set them
# (https://www.postgresql.org/docs/current/libpq-envars.html).
LIBPQ_VARIABLES = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "require_auth": "PGREQUIREAUTH",
    "channel_binding": "PGCHANNELBINDING",
    "service": "PGSERVICE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "sslmode": "PGSSLMODE",
    "requiressl": "PGREQUIRESSL",
    "sslnegotiation": "PGSSLNEGOTIATION",
    "sslcompression": "PGSSLCOMPRESSION",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR",
    "sslsni": "PGSSLSNI",
    "requirepeer": "PGREQUIREPEER",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME",
    "gsslib": "PGGSSLIB",
    "gssdelegation": "PGGSSDELEGATION",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "client_encoding": "PGCLIENTENCODING",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
}


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
    return url.set(drivername=DRIVER)


def url_from_parts(
    *, host: str, port: int, user: str | None, password: str | None, database: str
) -> URL:
    """A URL built from separate values; any character in the password is fine."""
    from sqlalchemy import URL

    return URL.create(
        DRIVER, username=user, password=password, host=host, port=port, database=database
    )


def libpq_environment(url: URL, *, connect_timeout: float = 10) -> dict[str, str]:
    """The PG* variables that make a libpq program connect where `url` points, as `url`
    says to (the password included: give the result to that one child alone)."""
    parameters: dict[str, str] = {
        "application_name": APPLICATION_NAME,
        "connect_timeout": str(max(1, round(connect_timeout))),
    }
    parts = {
        "host": url.host,
        "port": str(url.port) if url.port else None,
        "user": url.username,
        "password": url.password,
        "dbname": url.database,
    }
    parameters.update({name: part for name, part in parts.items() if part})
    # The query's parameters win over the URL's parts, as they do for the driver (psycopg2
    # passes them on last): `?host=/run/postgresql` names a socket directory.
    for name, value in url.query.items():
        if name not in LIBPQ_VARIABLES:
            raise SettingsError(
                f"the database URL's parameter {name!r} is not a libpq connection parameter, "
                "so pg_dump and pg_restore cannot be given it; remove it from the URL"
            )
        parameters[name] = value if isinstance(value, str) else ",".join(value)
    return {LIBPQ_VARIABLES[name]: value for name, value in parameters.items()}
