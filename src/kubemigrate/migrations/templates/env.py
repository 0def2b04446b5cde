"""Alembic environment, written by kubemigrate (`inv db.init`).

The URL never comes from alembic.ini. `inv db.*` hands a live connection in
`config.attributes["connection"]`; the bare `alembic` command reads `DATABASE_URL` from the
environment. Either way the password never passes through the ini parser, where `%` is special.
The tables are those of the module or package that alembic.ini names as `models`;
kubemigrate's ledger table (`kubemigrate_history`) is not one of them.
"""

import os
from logging.config import fileConfig
from typing import Any

import sqlalchemy as sa
from alembic import context

from kubemigrate.models import discover, include_name

config = context.config
if config.config_file_name and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def models() -> str:
    """The module or package of the SQLModel tables, from the `models` option of alembic.ini."""
    name = config.get_main_option("models")
    if not name:
        raise SystemExit("alembic.ini names no models: add `models = <module or package>`")
    return name


target_metadata = discover(models())

OPTIONS: dict[str, Any] = {
    "target_metadata": target_metadata,
    "compare_type": True,
    "transaction_per_migration": True,
    "include_name": include_name,  # autogenerate leaves kubemigrate's ledger table alone
}


def environment_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("DATABASE_URL is not set: export it, or run migrations with `inv db.*`")
    return url


def run_migrations_offline() -> None:
    """Write SQL instead of running it: no database is needed, only its dialect."""
    url = config.attributes.get("url") or os.environ.get("DATABASE_URL") or "postgresql://"
    context.configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"}, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run against a live database, one transaction per migration.

    `config.attributes["connection"]` may hold a Connection (inv db.*) or an Engine
    (pytest-alembic); without it the URL comes from DATABASE_URL.
    """
    connectable = config.attributes.get("connection")
    if connectable is None:
        connectable = sa.create_engine(environment_url(), poolclass=sa.pool.NullPool)
    if isinstance(connectable, sa.Connection):
        migrate(connectable)
        return
    with connectable.connect() as connection:
        migrate(connection)


def migrate(connection: sa.Connection) -> None:
    context.configure(connection=connection, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
