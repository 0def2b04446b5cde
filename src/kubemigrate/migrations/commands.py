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

import ast
import re
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from kubemigrate.errors import (
    KubemigrateError,
    MigrationError,
)
from kubemigrate.migrations.config import alembic_config, checked, layout, offline_config
from kubemigrate.migrations.executor import alembic_command
from kubemigrate.migrations.failures import alembic_errors, project_errors
from kubemigrate.migrations.recorder import current_heads, require_head
from kubemigrate.postgres.connections import connect, connect_plainly
from kubemigrate.settings.declared import Settings
from kubemigrate.target.database import database, known_passwords

if TYPE_CHECKING:
    from alembic.config import Config

    from kubemigrate.migrations.layout import Layout
    from kubemigrate.migrations.ledger_hook import Recorder
    from kubemigrate.migrations.revisions import Graph


@contextmanager
def _online(
    settings: Settings, stdout: TextIO | None = None, *, changes: bool = False
) -> Iterator[Config]:
    """A Config carrying a live connection to the configured database.

    With `changes` (upgrade, downgrade, stamp) the migration lock is held throughout, and the
    session gets the configured lock and statement timeouts.
    """
    from kubemigrate.postgres.locking import migration_lock, migration_session, set_session

    config = alembic_config(settings, stdout=stdout)
    db = database(settings)
    with ExitStack() as stack:
        lock = stack.enter_context(migration_lock(db, settings.lock_wait)) if changes else None
        connection = stack.enter_context(connect(db))
        if lock is not None:
            set_session(connection, migration_session(settings, lock.server_version))
        stack.enter_context(alembic_errors(db))
        config.attributes["connection"] = connection
        yield config


def recorder(settings: Settings) -> Recorder | None:
    """The ledger's writer for a command that changes the database; None when it is off."""
    from kubemigrate.migrations import ledger, provenance
    from kubemigrate.migrations.ledger_hook import Recorder

    table = ledger.Table.of(settings)
    if table is None:
        return None
    return Recorder(table, settings.environment, provenance.RUN_ID, settings.project_dir)


# Commands that reach the database (unless they only print SQL); the others read the files.
ONLINE = ("upgrade", "downgrade", "stamp", "check", "revision")


def _reaches_database(name: str, arguments: dict[str, Any]) -> bool:
    return (
        name in ONLINE and not arguments.get("sql") and arguments.get("autogenerate", True) is True
    )


def _run(settings: Settings, name: str, arguments: dict[str, Any], *, changes: bool = False) -> Any:
    """Run Alembic's command `name` for the project, the way its env.py takes a database; what
    the command gives (`alembic_command`).

    An env.py that takes `config.attributes["connection"]` runs here, on kubemigrate's
    connection; any other runs in a child process (`kubemigrate.migrations.isolated`) that gets the
    database through `KUBEMIGRATE_EXPORT`, and so does every command that loads its revision
    files, since they may import the application, whose settings exist only there. Offline
    commands (history, heads, `--sql`...) reach no database.
    """
    found = checked(layout(settings))
    online = _reaches_database(name, arguments)
    needs_head = name in ("check", "revision") and online
    if found.takes_connection():
        if not online:
            with alembic_errors(), project_errors(settings, known_passwords):
                return alembic_command(offline_config(settings), name, arguments)
        from kubemigrate.migrations.ledger_hook import hooked

        with _online(settings, changes=changes) as config:
            if needs_head:
                require_head(graph(settings), config.attributes["connection"])
            with project_errors(settings, known_passwords), hooked(_writer(settings, changes)):
                return alembic_command(config, name, arguments)
    return _run_in_child(
        settings, found, name, arguments, changes=changes, online=online, needs_head=needs_head
    )


def _writer(settings: Settings, changes: bool) -> Recorder | None:
    return recorder(settings) if changes else None


def _run_in_child(
    settings: Settings,
    found: Layout,
    name: str,
    arguments: dict[str, Any],
    *,
    changes: bool,
    online: bool,
    needs_head: bool,
) -> Any:
    from kubemigrate.migrations import isolated
    from kubemigrate.postgres.locking import migration_lock

    db = database(settings) if online else None
    with isolated.started(settings, found, name, arguments, db=db) as child:
        if db is None:
            child.go()
        elif changes:
            with migration_lock(db, settings.lock_wait) as lock:
                child.go(server_version=lock.server_version, ledger=recorder(settings))
                return child.finish().get("result")
        else:
            if needs_head:
                with connect_plainly(db) as connection:
                    require_head(graph(settings), connection)
            child.go()
        return child.finish().get("result")


def graph(settings: Settings) -> Graph:
    """The migrations' revision graph, with each revision's message and file.

    Read from the files with `ast` (`kubemigrate.migrations.revisions`) when they state their
    identifiers as literals, which runs none of them; otherwise from Alembic, here when env.py takes
    kubemigrate's connection, or in the child Alembic process (where the application's settings
    exist) when it does not.
    """
    from kubemigrate.migrations.revisions import Graph, read

    found = checked(layout(settings))
    fast = read(found.ini) if found.script_location is not None else None
    if fast is not None:
        return fast
    return Graph.from_rows(_run(settings, "graph", {}))


def offline_sql(settings: Settings, spans: Sequence[str]) -> list[str | None]:
    """The SQL of each span (`FROM:TO`, or `TO` from base), rendered offline by the project's
    env.py, or None for a span that cannot render offline."""
    if not spans:
        return []
    import logging

    # Alembic's "Running upgrade" lines would read as if the plan migrated: kept for --debug.
    log = logging.getLogger().isEnabledFor(logging.DEBUG)
    return list(_run(settings, "render", {"spans": list(spans), "log": log}))


def upgrade(settings: Settings, revision: str = "head", *, sql: bool = False) -> bool:
    """Upgrade to `revision`; with `sql`, print the SQL instead of running it. A database
    already there is said so in one line, before Alembic starts (`kubemigrate.migrations.noop`):
    then False."""
    if not sql and already_at(settings, revision):
        return False
    _run(settings, "upgrade", {"revision": revision, "sql": sql}, changes=True)
    return True


def already_at(settings: Settings, revision: str) -> bool:
    """Whether the database is at `revision` for sure (said in one line); see `noop`."""
    from kubemigrate.migrations import noop

    return noop.already_at(
        settings, checked(layout(settings)), revision, lambda: database(settings)
    )


def upgrade_sql(settings: Settings, start: str | None, out: TextIO) -> None:
    """Write the SQL that upgrades from revision `start` (None: base) to head into `out`; a
    `MigrationError` when some of it cannot render offline."""
    (sql,) = offline_sql(settings, [f"{start}:head" if start else "head"])
    if sql is None:
        raise MigrationError(
            "the pending migrations do not all render offline (one reads the database); "
            "`inv db.plan` says which"
        )
    out.write(sql)


def downgrade(settings: Settings, revision: str, *, sql: bool = False) -> None:
    """Downgrade to `revision` (`-1`, an id, or `base`); `sql` needs a `FROM:TO` range."""
    if sql and ":" not in revision:
        raise MigrationError(
            "an offline downgrade needs a range, e.g. `inv db.downgrade head:-1 --sql` "
            "or `inv db.downgrade <from>:<to> --sql`"
        )
    _run(settings, "downgrade", {"revision": revision, "sql": sql}, changes=True)


def stamp(settings: Settings, revision: str, *, sql: bool = False, purge: bool = False) -> None:
    """Record `revision` as the database's revision without running migrations."""
    _run(settings, "stamp", {"revision": revision, "sql": sql, "purge": purge}, changes=True)


def current(settings: Settings, *, verbose: bool = False) -> None:
    """Print the database's revision, marked `(head)` when it is at a head, as `alembic
    current` does.

    The revision is read with plain SQL (`current_heads`) and described from the revision files
    (`kubemigrate.migrations.revisions`), without importing Alembic, running env.py or importing the
    models; `--verbose`, and layouts that reading does not cover, describe the revision with
    Alembic's script directory instead (where the revision files may be imported: here, or
    in the child), still without running env.py.
    """
    from kubemigrate.migrations import revisions

    ini = settings.path(settings.alembic_ini)
    read = None if verbose or not ini.is_file() else revisions.read(ini)
    if read is None:
        checked(layout(settings))  # a missing ini or migrations directory, said before connecting
    db = database(settings)
    with connect_plainly(db) as connection:
        recorded = current_heads(connection)
    shown = read.current(recorded) if read is not None else None
    if read is not None and shown is not None:
        for revision in shown:
            print(read.describe(revision))
        return
    _run(settings, "current", {"recorded": list(recorded), "verbose": verbose, "db": db.shown})


def database_revision(settings: Settings) -> str | None:
    """The database's single current revision; None at base (or with several heads)."""
    with connect(database(settings)) as connection:
        heads = current_heads(connection)
    return heads[0] if len(heads) == 1 else None


def history(settings: Settings, *, verbose: bool = False, rev_range: str | None = None) -> None:
    """Print the migrations, newest first."""
    _run(settings, "history", {"range": rev_range, "verbose": verbose})


def heads(settings: Settings, *, verbose: bool = False) -> None:
    """Print the head revisions of the migrations."""
    _run(settings, "heads", {"verbose": verbose})


def show(settings: Settings, revision: str) -> None:
    """Print one revision."""
    _run(settings, "show", {"revision": revision})


def revision(
    settings: Settings, message: str, *, autogenerate: bool = True, post: bool = False
) -> list[Path]:
    """Create a revision; autogenerated ones compare the models with the database at head.
    `post` marks it post-deploy (`phase = "post"`, `kubemigrate.migrations.phases`)."""
    if not message.strip():
        raise MigrationError(
            'a revision needs a message saying what it does, e.g. inv db.revision "add '
            'user.is_active"'
        )
    arguments = {"message": docstring_text(message), "autogenerate": autogenerate}
    written = [Path(path) for path in _run(settings, "revision", arguments)]
    if post:
        for path in written:
            mark_post_deploy(path)
    return written


def mark_post_deploy(path: Path) -> None:
    """Declare the revision file at `path` post-deploy: `phase = "post"` after its identifiers
    (whatever the project's template), written whole under a temporary name."""
    from kubemigrate.files import write_atomically

    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    names = ("depends_on", "branch_labels", "down_revision", "revision")
    at = next(
        (
            index
            for name in names
            for index, line in enumerate(lines)
            if re.match(rf"{name}\s*(:[^=]*)?=", line)
        ),
        len(lines) - 1,
    )
    marker = 'phase = "post"  # runs after the rollout (kubemigrate)\n'
    text = "".join([*lines[: at + 1], marker, *lines[at + 1 :]])
    try:
        ast.parse(text)
    except SyntaxError:  # the identifier spans lines: the marker goes last
        text = "".join(lines).rstrip("\n") + "\n\n" + marker
    write_atomically(path, text.encode("utf-8"))


def docstring_text(message: str) -> str:
    """`message` written so that, inside the triple-quoted docstring that revision templates
    open with, it parses and reads back as `message`: backslashes and quotes escaped (so the
    user's own script.py.mako needs no change). Control characters other than line breaks and
    tabs are refused."""
    if re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", message):
        raise MigrationError(
            "a revision message cannot hold control characters (other than line breaks and "
            "tabs); write it as plain text"
        )
    return message.replace("\\", "\\\\").replace('"', '\\"')


def merge(settings: Settings, revisions: Sequence[str], message: str | None) -> list[Path]:
    """Create a merge revision joining `revisions` (default: all heads)."""
    if len(graph(settings).heads()) < 2 and not revisions:
        raise MigrationError("there is a single head: nothing to merge")
    text = docstring_text(message) if message is not None else None
    written = _run(settings, "merge", {"revisions": list(revisions) or "heads", "message": text})
    return [Path(path) for path in written]


def check(settings: Settings) -> None:
    """Fail with the list of differences when the models and the migrations disagree."""
    _run(settings, "check", {})


def check_verdict(settings: Settings) -> str:
    """`check`'s verdict in one line: "ok: ..." or "fail: " and what failed."""

    try:
        check(settings)
    except KubemigrateError as exc:
        return f"fail: {exc}"
    return "ok: the models and the migrations agree"
