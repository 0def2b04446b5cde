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
import traceback
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from kubemigrate.errors import (
    DatabaseError,
    KubemigrateError,
    MigrationError,
    SettingsError,
    redact,
    wants_traceback,
)
from kubemigrate.settings import Settings
from kubemigrate.target import Database, connect, connect_plainly, database, driver_message

if TYPE_CHECKING:
    import psycopg2.extensions
    from alembic.config import Config
    from alembic.script import Script, ScriptDirectory
    from sqlalchemy import Connection

    from kubemigrate.layout import Layout
    from kubemigrate.revisions import Graph

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
    # A down_revision naming no revision: the error that follows says which file (revisions.py).
    warnings.filterwarnings("ignore", r"Revision \S+ referenced from .* is not present")


def _not_set_up_notes(record: logging.LogRecord) -> bool:
    """Drop Alembic's per-connection notes ("Context impl ...", "Will assume ...")."""
    return not str(record.msg).startswith(("Context impl", "Will assume"))


def layout(settings: Settings) -> Layout:
    """The project's alembic.ini and the migrations directory it names."""
    from kubemigrate.layout import Layout

    return Layout.read(settings.path(settings.alembic_ini))


def alembic_config(
    settings: Settings, *, stdout: TextIO | None = None, sql_output: TextIO | None = None
) -> Config:
    """Alembic's Config for the project, without a URL and without its own logging setup.

    A relative `script_location` and `prepend_sys_path` are resolved against the ini's
    directory, as Alembic resolves them when run there.
    """
    from alembic.config import Config

    from kubemigrate.layout import resolve_sys_path

    found = _checked(layout(settings))
    config = Config(str(found.ini), stdout=stdout or sys.stdout, output_buffer=sql_output)
    config.attributes["configure_logger"] = False
    if found.script_location is not None:
        config.set_main_option("script_location", str(found.script_location).replace("%", "%%"))
    sys.path[:0] = [entry for entry in resolve_sys_path(found) if entry not in sys.path]
    config.set_main_option("prepend_sys_path", "")
    return config


def _checked(found: Layout) -> Layout:
    if found.env_py is not None and not found.env_py.is_file():
        raise SettingsError(
            f"no migrations directory at {found.script_location} (named by script_location in "
            f"{found.ini}); create it with `inv db.init` or fix the path"
        )
    return found


def scripts(config: Config) -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config)


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
def _online(
    settings: Settings, stdout: TextIO | None = None, *, changes: bool = False
) -> Iterator[Config]:
    """A Config carrying a live connection to the configured database.

    With `changes` (upgrade, downgrade, stamp) the migration lock is held throughout and the
    session gets the configured lock and statement timeouts.
    """
    from kubemigrate.locking import migration_lock, migration_session, set_session

    config = alembic_config(settings, stdout=stdout)
    db = database(settings)
    with ExitStack() as stack:
        version = stack.enter_context(migration_lock(db, settings.lock_wait)) if changes else 0
        connection = stack.enter_context(connect(db))
        if changes:
            set_session(connection, migration_session(settings, version))
        stack.enter_context(alembic_errors(db))
        config.attributes["connection"] = connection
        yield config


@contextmanager
def project_errors(settings: Settings) -> Iterator[None]:
    """An exception from the project's own files (its revision files, env.py, models, settings)
    as one line naming the file and line (`project_failure`); the traceback too with `--debug`
    or KUBEMIGRATE_TRACEBACK."""
    from alembic.util import CommandError
    from sqlalchemy.exc import DBAPIError

    from kubemigrate.errors import KubemigrateError
    from kubemigrate.target import known_passwords

    try:
        yield
    except (KubemigrateError, CommandError, DBAPIError):
        raise  # Alembic's and the database's: `alembic_errors` words them
    except Exception as exc:
        hidden = known_passwords()
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
    from kubemigrate.revisions import diagnose

    found = diagnose(ini, lambda path: shown_path(path, project))
    if found is not None:
        return MigrationError(found)
    return ProjectError.from_exception(exc, project, hidden)


def _offline(settings: Settings, sql_output: TextIO | None = None) -> Config:
    config = alembic_config(settings, sql_output=sql_output)
    config.attributes["url"] = "postgresql+psycopg2://"
    return config


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
    connection; any other runs in a child process (`kubemigrate.alembic_process`) that gets the
    database through `KUBEMIGRATE_EXPORT`, and so does every command that loads its revision
    files, since they may import the application, whose settings exist only there. Offline
    commands (history, heads, `--sql`...) reach no database.
    """
    found = _checked(layout(settings))
    online = _reaches_database(name, arguments)
    needs_head = name in ("check", "revision") and online
    if found.takes_connection():
        if not online:
            with alembic_errors(), project_errors(settings):
                return alembic_command(_offline(settings), name, arguments)
        with _online(settings, changes=changes) as config:
            if needs_head:
                _require_head(graph(settings), config.attributes["connection"])
            with project_errors(settings):
                return alembic_command(config, name, arguments)
    return _run_in_child(
        settings, found, name, arguments, changes=changes, online=online, needs_head=needs_head
    )


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
    from kubemigrate import alembic_process
    from kubemigrate.locking import migration_lock

    db = database(settings) if online else None
    with alembic_process.started(settings, found, name, arguments, db=db) as child:
        if db is None:
            child.go()
        elif changes:
            with migration_lock(db, settings.lock_wait) as version:
                child.go(server_version=version)
                return child.finish().get("result")
        else:
            if needs_head:
                with connect_plainly(db) as connection:
                    _require_head(graph(settings), connection)
            child.go()
        return child.finish().get("result")


def alembic_command(config: Config, name: str, arguments: dict[str, Any]) -> Any:
    """Alembic's command `name` on `config` (in this process or in the child), with
    `arguments` as the functions below pass them. What it gives is plain data (it may cross
    from the child as JSON): the paths of the files it wrote, the revision graph's rows
    (`graph`), or the SQL of each span (`render`); None for the commands that print."""
    from alembic import command

    from kubemigrate.autogen import revision_rules

    sql = bool(arguments.get("sql"))
    match name:
        case "upgrade":
            command.upgrade(config, arguments["revision"], sql=sql)
        case "downgrade":
            command.downgrade(config, arguments["revision"], sql=sql)
        case "stamp":
            command.stamp(config, arguments["revision"], sql=sql, purge=arguments["purge"])
        case "check":
            _check(config)
        case "revision" if arguments.get("autogenerate", True):
            with _all_or_nothing(config):
                return _paths(
                    command.revision(
                        config,
                        message=arguments["message"],
                        autogenerate=True,
                        process_revision_directives=revision_rules,
                    )
                )
        case "revision":
            with _all_or_nothing(config):
                return _paths(command.revision(config, message=arguments["message"]))
        case "merge":
            with _all_or_nothing(config):
                return _paths(
                    command.merge(config, arguments["revisions"], message=arguments["message"])
                )
        case "current":
            _describe_current(config, arguments["recorded"], arguments["verbose"], arguments["db"])
        case "history":
            command.history(config, rev_range=arguments["range"], verbose=arguments["verbose"])
        case "heads":
            command.heads(config, verbose=arguments["verbose"])
        case "show":
            command.show(config, arguments["revision"])
        case "graph":
            return _graph_rows(scripts(config))
        case "render":
            scripts(config).get_heads()  # a broken revision file is said as such, not "offline"
            return [_render(config, span) for span in arguments["spans"]]
        case _:
            raise MigrationError(f"unknown Alembic command {name!r}")
    return None


@contextmanager
def _all_or_nothing(config: Config) -> Iterator[None]:
    """A revision file Alembic writes (it writes it itself, under its final name) is removed
    again if the command fails: a full disk or a read-only directory leaves no empty or partial
    file behind, which every later task would trip over; the failure is one line."""
    from kubemigrate.files import cannot_write

    directory = Path(scripts(config).versions)
    before = set(directory.iterdir()) if directory.is_dir() else set()
    try:
        yield
    except BaseException as exc:
        for path in set(directory.iterdir()) - before if directory.is_dir() else ():
            with suppress(OSError):
                path.unlink()
        if isinstance(exc, OSError):
            where = exc.filename or directory
            raise MigrationError(
                cannot_write("the revision file", where, exc, "nothing was written")
            ) from None
        raise


def _describe_current(config: Config, recorded: list[str], verbose: bool, shown: str) -> None:
    """What `alembic current` prints for the `recorded` revisions, without running env.py."""
    if verbose:
        config.print_stdout("Current revision(s) for %s:", shown)
    for script in scripts(config).get_all_current(tuple(recorded)):
        if script is not None:
            config.print_stdout(script.cmd_format(verbose))


def _graph_rows(directory: ScriptDirectory) -> list[dict[str, Any]]:
    from alembic.util import to_tuple

    return [
        {
            "revision": script.revision,
            "parents": list(to_tuple(script.down_revision, default=())),
            "doc": script.doc,
            "path": script.path,
        }
        for script in directory.walk_revisions()
    ]


def _render(config: Config, span: str) -> str | None:
    """The offline SQL of `span` (`FROM:TO`, or `TO` from base); None when it cannot render
    offline (a data migration that reads the database, `op.get_bind()`, and the like)."""
    from alembic import command

    config.output_buffer = io.StringIO()
    try:
        command.upgrade(config, span, sql=True)
    except Exception:
        return None
    return config.output_buffer.getvalue()


def graph(settings: Settings) -> Graph:
    """The migrations' revision graph, with each revision's message and file.

    Read from the files with `ast` (`kubemigrate.revisions`) when they state their identifiers
    as literals, which runs none of them; otherwise from Alembic, here when env.py takes
    kubemigrate's connection, or in the child Alembic process (where the application's
    settings exist) when it does not.
    """
    from kubemigrate.revisions import Graph, read

    found = _checked(layout(settings))
    fast = read(found.ini) if found.script_location is not None else None
    if fast is not None:
        return fast
    return Graph.from_rows(_run(settings, "graph", {}))


def offline_sql(settings: Settings, spans: Sequence[str]) -> list[str | None]:
    """The SQL of each span (`FROM:TO`, or `TO` from base), rendered offline by the project's
    env.py, or None for a span that cannot render offline."""
    if not spans:
        return []
    return list(_run(settings, "render", {"spans": list(spans)}))


def upgrade(settings: Settings, revision: str = "head", *, sql: bool = False) -> None:
    """Upgrade to `revision`; with `sql`, print the SQL instead of running it."""
    _run(settings, "upgrade", {"revision": revision, "sql": sql}, changes=True)


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
    (`kubemigrate.revisions`), without importing Alembic, running env.py or importing the
    models; `--verbose`, and layouts that reading does not cover, describe the revision with
    Alembic's script directory instead (where the revision files may be imported: here, or
    in the child), still without running env.py.
    """
    from kubemigrate import revisions

    ini = settings.path(settings.alembic_ini)
    read = None if verbose or not ini.is_file() else revisions.read(ini)
    if read is None:
        _checked(layout(settings))  # a missing ini or migrations directory, said before connecting
    db = database(settings)
    with connect_plainly(db) as connection:
        recorded = current_heads(connection)
    shown = read.current(recorded) if read is not None else None
    if read is not None and shown is not None:
        for revision in shown:
            print(read.describe(revision))
        return
    _run(settings, "current", {"recorded": list(recorded), "verbose": verbose, "db": db.shown})


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
    _run(settings, "history", {"range": rev_range, "verbose": verbose})


def heads(settings: Settings, *, verbose: bool = False) -> None:
    """Print the head revisions of the migrations."""
    _run(settings, "heads", {"verbose": verbose})


def show(settings: Settings, revision: str) -> None:
    """Print one revision."""
    _run(settings, "show", {"revision": revision})


def revision(settings: Settings, message: str, *, autogenerate: bool = True) -> list[Path]:
    """Create a revision; autogenerated ones compare the models with the database at head."""
    if not message.strip():
        raise MigrationError(
            'a revision needs a message saying what it does, e.g. inv db.revision "add '
            'user.is_active"'
        )
    arguments = {"message": docstring_text(message), "autogenerate": autogenerate}
    return [Path(path) for path in _run(settings, "revision", arguments)]


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
    from kubemigrate.errors import KubemigrateError

    try:
        check(settings)
    except KubemigrateError as exc:
        return f"fail: {exc}"
    return "ok: the models and the migrations agree"


def _check(config: Config) -> None:
    from alembic import command
    from alembic.util.exc import AutogenerateDiffsDetected

    config.stdout = io.StringIO()  # the verdict is the caller's
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


def not_at_head(
    graph: Graph, connection: Connection | psycopg2.extensions.connection
) -> str | None:
    """None when the database is at the migrations' head(s), else where it is instead."""
    wanted = set(graph.heads())
    have = set(current_heads(connection))
    if have == wanted:
        return None
    at = ", ".join(sorted(have)) or "base (empty)"
    return f"at {at}, not at head ({', '.join(sorted(wanted))})"


def to_head(graph: Graph) -> str:
    """What brings a database to head: the upgrade, after merging the heads if there are
    several (an upgrade to "head" refuses them)."""
    if len(graph.heads()) > 1:
        return "merge the heads with `inv db.merge`, then run `inv db.upgrade`"
    return "run `inv db.upgrade`"


def _require_head(graph: Graph, connection: Connection | psycopg2.extensions.connection) -> None:
    gap = not_at_head(graph, connection)
    if gap:
        raise MigrationError(f"the database is {gap}; {to_head(graph)} first")
    connection.rollback()  # end the read's implicit transaction before Alembic starts its own


def _paths(result: Script | list[Script | None] | None) -> list[str]:
    items = result if isinstance(result, list) else [result]
    return [str(s.path) for s in items if s is not None]
