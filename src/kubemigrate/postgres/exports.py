"""What a project's own env.py gets in its environment: `KUBEMIGRATE_EXPORT`.

The setting lists `NAME=TEMPLATE` pairs, comma-separated; a template names the resolved
database's parts as `{url}`, `{host}`, `{port}`, `{user}`, `{password}` and `{database}`:

    KUBEMIGRATE_EXPORT=DATABASE_URL={url}          # the default: env.py reads a URL
    KUBEMIGRATE_EXPORT=POSTGRES_SERVER={host},POSTGRES_PORT={port},POSTGRES_USER={user},\
POSTGRES_PASSWORD={password},POSTGRES_DB={database}   # env.py builds it from its settings

`{url}` keeps the driver the URL's text names (`postgresql+psycopg://` stays so); a URL that
names none, or that kubemigrate builds itself (embedded server, parts, a Secret's parts), gets
`KUBEMIGRATE_DRIVER` (default: psycopg2's, which kubemigrate installs; a bare `postgresql://`
would mean psycopg 3 to SQLAlchemy 2.1 and psycopg2 to 2.0). The values
hold the password: they go to the child Alembic process alone, through its environment.
"""

from __future__ import annotations

from kubemigrate.postgres.urls import DRIVER, URL


def render(exports: tuple[tuple[str, str], ...], url: URL, driver: str | None) -> dict[str, str]:
    """The variables `exports` gives for `url` (the password included)."""
    named = url.set(drivername=url.named_driver or driver or DRIVER)
    parts = {
        "url": named.render_as_string(hide_password=False),
        "host": url.host or str(url.query.get("host", "")),
        "port": str(url.port or url.query.get("port", "") or 5432),
        "user": url.username or "",
        "password": url.password or "",
        "database": url.database or "",
    }
    return {name: template.format(**parts) for name, template in exports}


def names(exports: tuple[tuple[str, str], ...]) -> list[str]:
    return [name for name, _ in exports]


def secret_names(exports: tuple[tuple[str, str], ...]) -> list[str]:
    """The variables whose value holds the password (their template names {password} or
    {url}): what a message must never show. Host, port, user and database may be shown."""
    return [name for name, template in exports if "{password}" in template or "{url}" in template]
