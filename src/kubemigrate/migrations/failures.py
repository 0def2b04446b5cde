"""Failures while Alembic runs, as one line saying what to do: Alembic's and the driver's
errors (`alembic_errors`), and an exception from the project's own files, its revision files,
env.py, models or settings (`project_errors`, `project_failure`), in this process or the child."""

from __future__ import annotations

import re
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from kubemigrate.errors import (
    DatabaseError,
    KubemigrateError,
    MigrationError,
    redact,
    wants_traceback,
)
from kubemigrate.migrations.config import layout
from kubemigrate.postgres.connections import driver_message

if TYPE_CHECKING:
    from kubemigrate.postgres.connections import Database
    from kubemigrate.settings.declared import Settings


@contextmanager
def alembic_errors(db: Database | None = None) -> Iterator[None]:
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
        if exc.connection_invalidated:
            raise DatabaseError(
                f"lost the connection to the database ({message}); the migration in progress "
                "was rolled back, run the task again"
            ) from None
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
    missing_id = re.match(r"Could not determine revision id from filename (\S+?\.py)", first)
    if missing_id:
        return (
            f'revision file {missing_id[1]} states no revision id: add `revision = "..."` and '
            "`down_revision` as the other revision files have them (nothing was changed)"
        )
    if "Can't locate revision" in first or "No such revision" in first:
        return f"{first.rstrip('.')}; `inv db.history` lists the known revisions"
    return first


@contextmanager
def project_errors(settings: Settings, passwords: Callable[[], list[str]]) -> Iterator[None]:
    """An exception from the project's own files (its revision files, env.py, models, settings)
    as one line naming the file and line (`project_failure`); the traceback too with `--debug`
    or KUBEMIGRATE_TRACEBACK. `passwords` gives those never to be shown (the databases'
    resolved so far)."""
    from alembic.util import CommandError
    from sqlalchemy.exc import DBAPIError

    from kubemigrate.errors import KubemigrateError

    try:
        yield
    except (KubemigrateError, CommandError, DBAPIError):
        raise  # Alembic's and the database's: `alembic_errors` words them
    except Exception as exc:
        hidden = passwords()
        if wants_traceback(settings.traceback):
            print(redact("".join(traceback.format_exception(exc)), hidden), file=sys.stderr)
        raise project_failure(exc, layout(settings).ini, settings.project_dir, hidden) from None


def project_failure(
    exc: BaseException, ini: Path, project: Path, hidden: Sequence[str]
) -> KubemigrateError:
    """The one line for an exception raised while Alembic ran the project's files, in this
    process or in the child: a broken revision file said precisely (which file, what is wrong
    with it, as `ast` reads them), else the project's file and line where it was raised."""
    from kubemigrate.errors import ProjectError, shown_path
    from kubemigrate.migrations.revisions import diagnose

    found = diagnose(ini, lambda path: shown_path(path, project))
    if found is not None:
        return MigrationError(found)
    return ProjectError.from_exception(exc, project, hidden)
