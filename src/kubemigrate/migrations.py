"""Alembic's commands, run against the configured database.

One function per command, each a thin call of `alembic.command`, in the manner of
Flask-Migrate. Online commands open one connection and hand it to env.py through
`config.attributes["connection"]`, so the URL (and its password) never passes through
alembic.ini. Offline (`sql=True`) commands need no database: the SQL goes to standard output
and every status line to standard error, so `inv db.upgrade --sql > plan.sql` is clean.

Alembic's and the driver's errors become `MigrationError` / `DatabaseError` with one line
saying what to do.
"""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from kubemigrate.errors import DatabaseError, MigrationError, SettingsError
from kubemigrate.settings import Settings
from kubemigrate.target import Database, connect, connect_plainly, database, driver_message

if TYPE_CHECKING:
    import psycopg2.extensions
    from alembic.config import Config
    from alembic.script import Script, ScriptDirectory
    from sqlalchemy import Connection

VERSION_TABLE = "alembic_version"  # Alembic's default, which migrations/env.py keeps
LOG_FORMAT = "%(levelname)-5.5s [%(name)s] %(message)s"
# Alembic's set-up notes, not progress: kept out of the task's output.
QUIET_LOGGERS = ("alembic.runtime.plugins", "alembic.ddl.postgresql")


def configure_logging(stream: TextIO | None = None) -> None:
    """Send Alembic's progress lines to standard error (once per process)."""
    logger = logging.getLogger("alembic")
    if any(getattr(h, "kubemigrate", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(_not_set_up_notes)
    handler.kubemigrate = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for chatty in QUIET_LOGGERS:
        logging.getLogger(chatty).setLevel(logging.WARNING)


def _not_set_up_notes(record: logging.LogRecord) -> bool:
    """Drop Alembic's per-connection notes ("Context impl ...", "Will assume ...")."""
    return not str(record.msg).startswith(("Context impl", "Will assume"))


def alembic_config(
    settings: Settings, *, stdout: TextIO | None = None, sql_output: TextIO | None = None
) -> Config:
    """Alembic's Config for the project, without a URL and without its own logging setup."""
    from alembic.config import Config

    ini = settings.path(settings.alembic_ini)
    if not ini.is_file():
        raise SettingsError(
            f"no Alembic configuration at {ini}: run kubemigrate from the project directory "
            "or set KUBEMIGRATE_MIGRATIONS_CONFIG"
        )
    config = Config(str(ini), stdout=stdout or sys.stdout, output_buffer=sql_output)
    config.attributes["configure_logger"] = False
    script_location = Path(config.get_main_option("script_location") or "")
    if not (script_location / "env.py").is_file():
        raise SettingsError(
            f"no migrations directory at {script_location} (named by script_location in "
            f"{ini.name}); create it with `alembic init` or fix the path"
        )
    return config


def scripts(config: Config) -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config)


@contextmanager
def _alembic_errors(db: Database | None = None) -> Iterator[None]:
    """Turn Alembic's and the driver's exceptions into one-line user errors."""
    from alembic.util import CommandError
    from sqlalchemy.exc import DBAPIError

    try:
        yield
    except CommandError as exc:
        raise MigrationError(_advice(str(exc))) from None
    except DBAPIError as exc:
        lost = db.lost(within=1) if db is not None else None
        if lost:
            raise DatabaseError(
                f"{lost}; the migration in progress was rolled back, run the task again"
            ) from None
        message = driver_message(exc)
        missing = MISSING_EXTENSION.search(str(getattr(exc, "orig", exc)))
        if missing:
            raise DatabaseError(_no_extension(missing[1] or missing[2])) from None
        hint = ""
        if "lock timeout" in message:
            hint = " (a table it needs is busy: retry later, or raise KUBEMIGRATE_LOCK_TIMEOUT)"
        elif "statement timeout" in message:
            hint = " (raise KUBEMIGRATE_STATEMENT_TIMEOUT for long migrations)"
        raise DatabaseError(
            f"the database refused a migration statement: {message}{hint}; "
            "the failed migration's transaction was rolled back"
        ) from None


MISSING_EXTENSION = re.compile(
    r'extension "([^"]+)" is not available|extension control file "[^"]*/([^/"]+)\.control"'
)


def _no_extension(name: str) -> str:
    return (
        f"the database server has no extension {name!r}, which a migration creates; nothing "
        "of that migration was applied. Run the migrations on a PostgreSQL that has it: set "
        "KUBEMIGRATE_POSTGRES_BIN to its bin directory for the embedded server (Debian's "
        "/usr/lib/postgresql/15/bin has uuid-ossp and pgcrypto), or DATABASE_URL to its server"
    )


def _advice(message: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else "Alembic failed"
    if "Multiple head revisions" in first or "multiple heads" in first.lower():
        return (
            "the migrations have several heads; merge them with `inv db.merge` "
            "(or name one head explicitly)"
        )
    if first.startswith("Relative revision"):
        return (
            f"{first}: the database has fewer migrations applied than that; "
            "`inv db.current` shows where it is"
        )
    if "Can't locate revision" in first or "No such revision" in first:
        return f"{first.rstrip('.')}; `inv db.history` lists the known revisions"
    return first


@contextmanager
def _online(
    settings: Settings, stdout: TextIO | None = None, *, changes: bool = False
) -> Iterator[Config]:
    """A Config carrying a live connection to the configured database.

    With `changes` (upgrade, downgrade, stamp) the migration lock is held throughout and the
    session gets the configured lock and statement timeouts.
    """
    from kubemigrate.locking import migration_lock, set_timeouts

    config = alembic_config(settings, stdout=stdout)
    db = database(settings)
    with ExitStack() as stack:
        if changes:
            stack.enter_context(migration_lock(db, settings.lock_wait))
        connection = stack.enter_context(connect(db))
        if changes:
            set_timeouts(
                connection,
                lock_timeout=settings.lock_timeout,
                statement_timeout=settings.statement_timeout,
            )
        stack.enter_context(_alembic_errors(db))
        config.attributes["connection"] = connection
        yield config


def _offline(settings: Settings, sql_output: TextIO | None = None) -> Config:
    config = alembic_config(settings, sql_output=sql_output)
    config.attributes["url"] = "postgresql+psycopg2://"
    return config


def upgrade(settings: Settings, revision: str = "head", *, sql: bool = False) -> None:
    """Upgrade to `revision`; with `sql`, print the SQL instead of running it."""
    from alembic import command

    if sql:
        with _alembic_errors():
            command.upgrade(_offline(settings), revision, sql=True)
        return
    with _online(settings, changes=True) as config:
        command.upgrade(config, revision)


def upgrade_sql(settings: Settings, start: str | None, out: TextIO) -> None:
    """Write the SQL that upgrades from revision `start` (None: base) to head into `out`."""
    from alembic import command

    with _alembic_errors():
        command.upgrade(_offline(settings, out), f"{start}:head" if start else "head", sql=True)


def downgrade(settings: Settings, revision: str, *, sql: bool = False) -> None:
    """Downgrade to `revision` (`-1`, an id, or `base`); `sql` needs a `FROM:TO` range."""
    from alembic import command

    if sql:
        if ":" not in revision:
            raise MigrationError(
                "an offline downgrade needs a range, e.g. `inv db.downgrade head:-1 --sql` "
                "or `inv db.downgrade <from>:<to> --sql`"
            )
        with _alembic_errors():
            command.downgrade(_offline(settings), revision, sql=True)
        return
    with _online(settings, changes=True) as config:
        command.downgrade(config, revision)


def stamp(settings: Settings, revision: str, *, sql: bool = False, purge: bool = False) -> None:
    """Record `revision` as the database's revision without running migrations."""
    from alembic import command

    if sql:
        with _alembic_errors():
            command.stamp(_offline(settings), revision, sql=True, purge=purge)
        return
    with _online(settings, changes=True) as config:
        command.stamp(config, revision, purge=purge)


def current(settings: Settings, *, verbose: bool = False) -> None:
    """Print the database's revision, marked `(head)` when it is at a head, as `alembic
    current` does.

    The revision is read with plain SQL (`current_heads`) and described from the revision files
    (`kubemigrate.revisions`), without importing Alembic, running env.py or importing the
    models; `--verbose`, and layouts that reading does not cover, ask Alembic's script
    directory instead.
    """
    from kubemigrate import revisions

    ini = settings.path(settings.alembic_ini)
    graph = None if verbose or not ini.is_file() else revisions.read(ini)
    if graph is None:
        alembic_config(settings)  # a missing ini or migrations directory, said before connecting
    db = database(settings)
    with connect_plainly(db) as connection:
        recorded = current_heads(connection)
    shown = graph.current(recorded) if graph is not None else None
    if graph is not None and shown is not None:
        for revision in shown:
            print(graph.describe(revision))
        return
    config = alembic_config(settings)
    with _alembic_errors():
        if verbose:
            config.print_stdout("Current revision(s) for %s:", db.shown)
        for script in scripts(config).get_all_current(recorded):
            if script is not None:
                config.print_stdout(script.cmd_format(verbose))


def current_heads(connection: Connection | psycopg2.extensions.connection) -> tuple[str, ...]:
    """The revisions recorded in the database's alembic_version table (none before the first
    upgrade).

    Read with plain SQL rather than through Alembic's MigrationContext, so that the tasks that
    only need the revision (backup, restore, release) do not pay Alembic's import (about 0.1 s).
    Like Alembic, it looks for the table on the search path. `connection` is SQLAlchemy's or,
    for `inv db.current`, a bare psycopg2 one.
    """
    found = _rows(connection, f"SELECT to_regclass('{VERSION_TABLE}')")
    if found[0][0] is None:
        return ()
    rows = _rows(connection, f"SELECT version_num FROM {VERSION_TABLE}")
    return tuple(str(version) for (version,) in rows)


def _rows(
    connection: Connection | psycopg2.extensions.connection, sql: str
) -> list[tuple[Any, ...]]:
    """The rows of `sql` on a SQLAlchemy connection or a bare psycopg2 one."""
    import psycopg2.extensions

    if isinstance(connection, psycopg2.extensions.connection):
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())
    return [tuple(row) for row in connection.exec_driver_sql(sql)]


def database_revision(settings: Settings) -> str | None:
    """The database's single current revision; None at base (or with several heads)."""
    with connect(database(settings)) as connection:
        heads = current_heads(connection)
    return heads[0] if len(heads) == 1 else None


def history(settings: Settings, *, verbose: bool = False, rev_range: str | None = None) -> None:
    """Print the migrations, newest first."""
    from alembic import command

    with _alembic_errors():
        command.history(alembic_config(settings), rev_range=rev_range, verbose=verbose)


def heads(settings: Settings, *, verbose: bool = False) -> None:
    """Print the head revisions of the migrations."""
    from alembic import command

    with _alembic_errors():
        command.heads(alembic_config(settings), verbose=verbose)


def show(settings: Settings, revision: str) -> None:
    """Print one revision."""
    from alembic import command

    with _alembic_errors():
        command.show(alembic_config(settings), revision)


def revision(settings: Settings, message: str, *, autogenerate: bool = True) -> list[Path]:
    """Create a revision; autogenerated ones compare the models with the database at head."""
    from alembic import command

    from kubemigrate.autogen import revision_rules

    if not message.strip():
        raise MigrationError(
            'a revision needs a message saying what it does, e.g. inv db.revision "add '
            'user.is_active"'
        )
    if not autogenerate:
        with _alembic_errors():
            return _paths(command.revision(alembic_config(settings), message=message))
    with _online(settings) as config:
        _require_head(config)
        return _paths(
            command.revision(
                config,
                message=message,
                autogenerate=True,
                process_revision_directives=revision_rules,
            )
        )


def merge(settings: Settings, revisions: Sequence[str], message: str | None) -> list[Path]:
    """Create a merge revision joining `revisions` (default: all heads)."""
    from alembic import command

    config = alembic_config(settings)
    with _alembic_errors():
        if len(scripts(config).get_heads()) < 2 and not revisions:
            raise MigrationError("there is a single head: nothing to merge")
        return _paths(command.merge(config, list(revisions) or "heads", message=message))


def check(settings: Settings) -> None:
    """Fail with the list of differences when the models and the migrations disagree."""
    from alembic import command
    from alembic.util.exc import AutogenerateDiffsDetected

    with _online(settings, stdout=io.StringIO()) as config:  # the verdict is the caller's
        _require_head(config)
        try:
            command.check(config)
        except AutogenerateDiffsDetected as exc:
            raise MigrationError(
                "the models and the migrations disagree; run `inv db.revision MESSAGE` to "
                f"write a migration for: {_diffs(exc)}"
            ) from None


def _diffs(exc: Exception) -> str:
    diffs = getattr(exc, "diffs", None)
    if diffs:
        return "; ".join(_describe(diff) for diff in diffs)
    return str(exc).split(":", 1)[-1].strip()


def _describe(diff: Any) -> str:
    if isinstance(diff, tuple) and diff and isinstance(diff[0], str):
        names = [getattr(part, "name", None) for part in diff[1:]]
        named = [str(n) for n in names if n]
        return " ".join([diff[0], *named])
    if isinstance(diff, list):
        return ", ".join(_describe(d) for d in diff)
    return str(diff)


def not_at_head(config: Config, connection: Connection) -> str | None:
    """None when the database is at the migrations' head(s), else where it is instead."""
    wanted = set(scripts(config).get_heads())
    have = set(current_heads(connection))
    if have == wanted:
        return None
    at = ", ".join(sorted(have)) or "base (empty)"
    return f"at {at}, not at head ({', '.join(sorted(wanted))})"


def _require_head(config: Config) -> None:
    connection = config.attributes["connection"]
    gap = not_at_head(config, connection)
    if gap:
        raise MigrationError(f"the database is {gap}; run `inv db.upgrade` first")
    connection.rollback()  # end the read's implicit transaction before Alembic starts its own


def _paths(result: Script | list[Script | None] | None) -> list[Path]:
    items = result if isinstance(result, list) else [result]
    return [Path(s.path) for s in items if s is not None]
