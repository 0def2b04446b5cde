"""Database URLs: parsing one, building one from parts, and the libpq environment of one.

`URL` is kubemigrate's own value type, parsed and rendered by SQLAlchemy's rules (the same
grammar, percent-decoding and masking) without importing SQLAlchemy, which costs about 0.17 s:
a task that only reads a revision (`inv db.current`) never imports it. `URL.sqlalchemy()` gives
SQLAlchemy's URL where an engine is made. A URL's text is never echoed in an error (it may hold
a password); `render_as_string()` masks the password unless asked not to.

`libpq_environment` is the one way a URL reaches libpq's own programs (pg_dump, pg_restore):
every part and every connection parameter of the URL's query (`host` given as a socket
directory, `sslmode`, `sslrootcert`, `options`...) becomes the matching PG* variable, so the
child connects exactly as the driver does, password included, without a command-line argument.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote

from kubemigrate.errors import SettingsError
from kubemigrate.settings.kinds import host_problem

if TYPE_CHECKING:
    import sqlalchemy

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


# SQLAlchemy's URL grammar: driver://user:password@host:port/database?query
URL_PATTERN = re.compile(
    r"""
    (?P<drivername>[\w+]+)://
    (?:(?P<username>[^:/]*)(?::(?P<password>[^@]*))?@)?
    (?:(?:\[(?P<ipv6host>[^/?]+)\]|(?P<ipv4host>[^/:?]+))?(?::(?P<port>[^/?]*))?)?
    (?:/(?P<database>[^?]*))?
    (?:\?(?P<query>.*))?
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class URL:
    """A database URL; the password is left out of the repr."""

    drivername: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    host: str | None = None
    port: int | None = None
    database: str | None = None
    query: dict[str, str | tuple[str, ...]] = field(default_factory=dict, hash=False)
    # The driver the URL's text named (`postgresql+psycopg`), for the project's own env.py;
    # kubemigrate's own connections use DRIVER.
    named_driver: str | None = None

    def set(self, **changes: Any) -> URL:
        """A copy with `changes` (host, port, drivername...)."""
        return dataclasses.replace(self, **changes)

    def get_backend_name(self) -> str:
        return self.drivername.split("+", 1)[0]

    def render_as_string(self, hide_password: bool = True) -> str:
        """The URL as text, its parts percent-encoded; the password as *** unless shown."""
        text = self.drivername + "://"
        if self.username is not None:
            text += quote(self.username, safe=" +")
            if self.password is not None:
                text += ":" + ("***" if hide_password else quote(self.password, safe=" +"))
            text += "@"
        if self.host is not None:
            text += f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            text += f":{self.port}"
        if self.database is not None:
            text += "/" + quote(self.database, safe=" +/")
        if self.query:
            text += "?" + "&".join(
                f"{quote_plus(key)}={quote_plus(value)}"
                for key in sorted(self.query)
                for value in _values(self.query[key])
            )
        return text

    def sqlalchemy(self) -> sqlalchemy.URL:
        """The same URL as SQLAlchemy's type, for `create_engine`."""
        from sqlalchemy import URL as SqlalchemyURL

        return SqlalchemyURL.create(
            self.drivername,
            username=self.username,
            password=self.password,
            host=self.host,
            port=self.port,
            database=self.database,
            query=self.query,
        )


def parse_url(text: str, origin: str) -> URL:
    """A URL for PostgreSQL with psycopg2; the text is never echoed on error."""
    match = URL_PATTERN.match(text)
    invalid = SettingsError(
        f"the database URL from {origin} is not a valid URL; expected "
        "postgresql://USER:PASSWORD@HOST:PORT/DATABASE (percent-encode special characters)"
    )
    if match is None:
        raise invalid
    parts = match.groupdict()
    if any("@" in (parts[name] or "") for name in ("ipv4host", "ipv6host", "port", "database")):
        raise SettingsError(
            f"the database URL from {origin} has an '@' after its USER:PASSWORD@: a password "
            "(or user) holding '@', ':' or '/' must be percent-encoded, '@' as %40, ':' as %3A, "
            "'/' as %2F (or set the parts apart, KUBEMIGRATE_DB_PASSWORD takes any character)"
        )
    host = parts["ipv4host"] or parts["ipv6host"]
    if host is not None and host_problem(host):
        raise invalid
    try:
        port = int(parts["port"]) if parts["port"] else None
    except ValueError:
        raise invalid from None
    if port is not None and not 0 < port < 65536:
        raise invalid
    url = URL(
        drivername=parts["drivername"],
        username=_unquoted(parts["username"]),
        password=_unquoted(parts["password"]),
        host=host,
        port=port,
        database=_unquoted(parts["database"]),
        query=_query(parts["query"]),
    )
    if url.get_backend_name() not in ("postgresql", "postgres"):
        raise SettingsError(
            f"the database URL from {origin} is for {url.get_backend_name()!r}; "
            "kubemigrate supports PostgreSQL only"
        )
    named = url.drivername if "+" in url.drivername else None
    return url.set(drivername=DRIVER, named_driver=named)


def url_from_parts(
    *, host: str, port: int, user: str | None, password: str | None, database: str
) -> URL:
    """A URL built from separate values; any character in the password is fine."""
    return URL(DRIVER, username=user, password=password, host=host, port=port, database=database)


def _unquoted(part: str | None) -> str | None:
    return unquote(part) if part is not None else None


def _query(text: str | None) -> dict[str, str | tuple[str, ...]]:
    """The query's parameters; a repeated one gives a tuple, as in SQLAlchemy."""
    query: dict[str, str | tuple[str, ...]] = {}
    for key, value in parse_qsl(text or ""):
        known = query.get(key)
        query[key] = value if known is None else (*_values(known), value)
    return query


def _values(value: str | tuple[str, ...]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else value


def libpq_environment(url: URL, *, connect_timeout: float = 10) -> dict[str, str]:
    """The PG* variables that make a libpq program connect where `url` points, as `url`
    says to (the password included: give the result to that one child alone)."""
    parameters = libpq_parameters(url, connect_timeout=connect_timeout)
    return {LIBPQ_VARIABLES[name]: value for name, value in parameters.items()}


def libpq_parameters(url: URL, *, connect_timeout: float = 10) -> dict[str, str]:
    """libpq's connection parameters for `url`: its parts, then its query's parameters."""
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
                "so neither the driver nor pg_dump can be given it; remove it from the URL"
            )
        parameters[name] = ",".join(_values(value))
    return parameters
