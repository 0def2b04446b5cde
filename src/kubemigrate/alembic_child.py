"""Alembic in a child process, for a project's own env.py.

An env.py that builds its own engine (from `DATABASE_URL`, or from the application's settings)
cannot be handed kubemigrate's connection. Such a project's commands run in a child process:
`python -m kubemigrate.alembic_child INI COMMAND ARGUMENTS`, started in the ini's directory as
the project's developers run `alembic` there, with the variables `KUBEMIGRATE_EXPORT` names in
its environment (the resolved database's URL or parts; nowhere else).

The parent resolves the database (opening a tunnel if it must), holds the migration lock on its
own connection for the whole run, gives the child the lock and statement timeouts through
libpq's `PGOPTIONS`, stops it on Ctrl-C or SIGTERM, and reports a lost tunnel.

In the child, a wrapper around Alembic's `EnvironmentContext.configure` sees the connection
env.py opened before any migration runs: if it reaches another host, port, database or user
than the target the parent resolved, the run stops there and nothing is applied. The wrapper
also keeps one transaction per migration and removes
the exported variables from the environment once env.py has its connection, so that no later
child (a post-write hook) inherits them.

The child reports its outcome in a small JSON file whose path the parent gives it.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubemigrate import errors
from kubemigrate.errors import DatabaseError, KubemigrateError, MigrationError, ProjectError

if TYPE_CHECKING:
    from kubemigrate.layout import Layout
    from kubemigrate.settings import Settings
    from kubemigrate.target import Database

REPORT = "KUBEMIGRATE_CHILD_REPORT"
TARGET = "KUBEMIGRATE_CHILD_TARGET"
EXPORTED = "KUBEMIGRATE_CHILD_EXPORTED"
TRACEBACK = "KUBEMIGRATE_CHILD_TRACEBACK"
PROJECT = "KUBEMIGRATE_CHILD_PROJECT"
CHECK_INTERVAL_SINCE = 140000  # client_connection_check_interval exists from PostgreSQL 14


# -- the parent --------------------------------------------------------------------------------


class Child:
    """A child Alembic process for `layout`'s env.py, started at once so that it imports
    Alembic and SQLAlchemy while the parent prepares (takes the lock); it runs its command when
    told to `go`, and `finish` waits for it and returns what it reported.

    `db` is the resolved database (None: an offline command, which reaches no database; env.py
    then gets a URL naming the dialect alone).
    """

    def __init__(
        self,
        settings: Settings,
        layout: Layout,
        command: str,
        arguments: dict[str, Any],
        *,
        db: Database | None,
    ) -> None:
        from kubemigrate import children
        from kubemigrate.exports import names, render
        from kubemigrate.migrations import wants_traceback
        from kubemigrate.urls import URL

        self.settings, self.layout, self.command, self.db = settings, layout, command, db
        url = db.url if db is not None else URL("postgresql", host="localhost", database="offline")
        self.report = Path(tempfile.mkdtemp(prefix="kubemigrate-")) / "report.json"
        env = {
            **children.plain_environ(),
            **render(settings.export, url, settings.driver),
            REPORT: str(self.report),
            EXPORTED: ",".join(names(settings.export)),
            PROJECT: str(settings.project_dir),
            TRACEBACK: "1" if wants_traceback(settings) else "",
        }
        if db is not None:
            env[TARGET] = json.dumps(_where(db.url))
        self.word: queue.Queue[bytes | None] = queue.Queue()
        self.process, self.errors = children.start_relayed(
            children.command(sys.executable),
            "-m",
            __name__,
            str(layout.ini),
            command,
            json.dumps(arguments),
            env=env,
            cwd=str(layout.directory),
            stdin=self.word,
        )

    def go(self, server_version: int = 0) -> None:
        """Run the command; with `server_version` (the parent holds the lock) the child's
        sessions get the migration timeouts through PGOPTIONS."""
        options = _timeouts(self.settings, server_version) if server_version else ""
        self.word.put(json.dumps({"pgoptions": options}).encode() + b"\n")
        self.word.put(None)

    def finish(self) -> dict[str, Any]:
        """Wait for the child; what it reported, or its failure as an error."""
        from kubemigrate import children

        finished = children.finished(self.process, self.errors)
        outcome = _read(self.report)
        if finished.ok:
            return outcome
        lost = self.db.lost(within=1) if self.db is not None else None
        if lost:
            raise DatabaseError(
                f"{lost}; the migration in progress was rolled back, run the task again"
            )
        if outcome.get("error"):
            kind = getattr(errors, str(outcome["error"]), KubemigrateError)
            raise kind(str(outcome["message"]))
        if finished.code in (130, 143, -2, -15):
            raise KeyboardInterrupt
        where = self.layout.env_py or self.layout.ini
        raise MigrationError(finished.describe(f"alembic {self.command} (for {where})"))

    def close(self) -> None:
        """Stop the child if it still runs; remove its report."""
        from kubemigrate import children

        children.stop(self.process)
        with suppress(OSError):
            self.report.unlink()
        with suppress(OSError):
            self.report.parent.rmdir()


@contextmanager
def started(
    settings: Settings,
    layout: Layout,
    command: str,
    arguments: dict[str, Any],
    *,
    db: Database | None,
) -> Iterator[Child]:
    """A started `Child`, stopped (should the parent fail before it ends) and cleaned up after
    the block."""
    child = Child(settings, layout, command, arguments, db=db)
    try:
        yield child
    finally:
        child.close()


def _where(url: Any) -> dict[str, str]:
    """Host, port, database and user of a URL (what the child compares; no password)."""
    from kubemigrate.urls import libpq_parameters

    parameters = libpq_parameters(url)
    return {
        "host": parameters.get("host", ""),
        "port": parameters.get("port", "5432"),
        "dbname": parameters.get("dbname", ""),
        "user": parameters.get("user", ""),
    }


def _timeouts(settings: Settings, server_version: int) -> str:
    from kubemigrate.locking import milliseconds

    options = [
        f"-c lock_timeout={milliseconds(settings.lock_timeout)}",
        f"-c statement_timeout={milliseconds(settings.statement_timeout)}",
    ]
    if server_version >= CHECK_INTERVAL_SINCE:  # a killed child's statement ends within 1 s
        options.append("-c client_connection_check_interval=1000")
    return " ".join(options)


def _read(report: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(report.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


# -- the child ---------------------------------------------------------------------------------


class Guard:
    """Wraps `EnvironmentContext.configure`: checks env.py's connection, keeps one transaction
    per migration, and hides the exported variables once env.py has connected."""

    def __init__(self, env_py: str, expected: dict[str, str] | None, exported: list[str]) -> None:
        self.env_py = env_py
        self.expected = expected
        self.exported = exported
        self.hidden = [os.environ.get(name, "") for name in exported]
        self.configured = False

    def install(self) -> None:
        from alembic.runtime.environment import EnvironmentContext

        original = EnvironmentContext.configure
        guard = self

        def configure(self: Any, *args: Any, **kwargs: Any) -> Any:
            guard.check(kwargs.get("connection", args[0] if args else None))
            kwargs["transaction_per_migration"] = True
            return original(self, *args, **kwargs)

        EnvironmentContext.configure = configure  # type: ignore[method-assign]

    def check(self, connection: Any) -> None:
        """Stop unless `connection` reaches the expected database (offline: nothing to check)."""
        self.configured = True
        for name in self.exported:
            os.environ.pop(name, None)
        if connection is None or self.expected is None:
            return
        _interruptible(connection)
        found = reached(connection)
        if found is None or same_database(found, self.expected):
            return
        raise MigrationError(
            f"{self.env_py} connected to {_describe(found)}, not to the database kubemigrate "
            f"resolved ({_describe(self.expected)}); nothing was migrated. Make env.py read "
            "the variables KUBEMIGRATE_EXPORT sets (now: "
            f"{', '.join(self.exported) or 'none'}), e.g. KUBEMIGRATE_EXPORT="
            "POSTGRES_SERVER={host},POSTGRES_PORT={port},POSTGRES_USER={user},"
            "POSTGRES_PASSWORD={password},POSTGRES_DB={database}"
        )

    @contextmanager
    def connection_errors(self) -> Iterator[None]:
        """A driver error before env.py handed over its connection: it could not connect."""
        from sqlalchemy.exc import DBAPIError

        from kubemigrate.target import driver_message

        try:
            yield
        except DBAPIError as exc:
            if self.configured:
                raise
            where = _describe(self.expected) if self.expected else "its database"
            raise DatabaseError(
                f"{self.env_py} cannot connect to its database: {driver_message(exc)} "
                f"(kubemigrate's target: {where}); check that it is running and reachable"
            ) from None


def _interruptible(connection: Any) -> None:
    """On psycopg2, a signal cancels the running statement (`kubemigrate.interrupts`); psycopg
    3 cancels it on an interrupt by itself."""
    driver = getattr(getattr(connection, "dialect", None), "driver", "")
    if driver == "psycopg2":
        from kubemigrate.interrupts import use_interruptible_waits

        use_interruptible_waits(10)


def reached(connection: Any) -> dict[str, str] | None:
    """Host, port, database and user of a SQLAlchemy connection, as libpq reports them."""
    try:
        info = connection.connection.dbapi_connection.info
        return {
            "host": str(info.host),
            "port": str(info.port),
            "dbname": str(info.dbname),
            "user": str(info.user),
        }
    except AttributeError:
        url = getattr(getattr(connection, "engine", None), "url", None)
        if url is None:
            return None
        return {
            "host": str(url.host or url.query.get("host") or ""),
            "port": str(url.port or 5432),
            "dbname": str(url.database or ""),
            "user": str(url.username or ""),
        }


LOOPBACK = {"localhost", "127.0.0.1", "::1", ""}


def same_database(found: dict[str, str], expected: dict[str, str]) -> bool:
    def host(value: str) -> str:
        value = value.split(",")[0]
        if value in LOOPBACK:
            return "loopback"
        return str(Path(value).resolve()) if value.startswith("/") else value.lower()

    return (
        host(found["host"]) == host(expected["host"])
        and found["port"].split(",")[0] == expected["port"].split(",")[0]
        and found["dbname"] == expected["dbname"]
        and found["user"] == expected["user"]
    )


def _describe(where: dict[str, str] | None) -> str:
    if not where:
        return "an unknown database"
    return (
        f"{where['host']}:{where['port']}/{where['dbname']} as {where['user'] or '(default user)'}"
    )


def main() -> int:
    """The child: run one Alembic command for the ini named on the command line."""
    ini, command, raw = sys.argv[1:4]
    arguments = json.loads(raw)
    report = Path(os.environ.pop(REPORT))
    expected = json.loads(os.environ.pop(TARGET, "null"))
    exported = [name for name in os.environ.pop(EXPORTED, "").split(",") if name]
    project = Path(os.environ.pop(PROJECT, ".")).resolve()
    show_traceback = os.environ.pop(TRACEBACK, "") == "1"

    from kubemigrate.interrupts import install_signal_handlers
    from kubemigrate.migrations import configure_logging

    install_signal_handlers()
    configure_logging()  # Alembic's progress lines, as in the task's own process
    with suppress(ImportError):  # env.py on psycopg2: a signal cancels the running statement
        from kubemigrate.interrupts import use_interruptible_waits

        use_interruptible_waits(10)
    from kubemigrate.layout import Layout

    layout = Layout.read(Path(ini))
    guard = Guard(str(_shown(layout.env_py, project)), expected, exported)
    guard.install()
    from alembic import command as _preloaded  # noqa: F401  (imported while the parent prepares)

    word = sys.stdin.readline()
    if not word:
        return 0  # the parent gave up before the word (it could not take the lock)
    options = json.loads(word).get("pgoptions")
    if options:
        os.environ["PGOPTIONS"] = options
    outcome: dict[str, Any] = {}
    code = 0
    try:
        outcome["paths"] = _command(layout, command, arguments, guard)
    except KeyboardInterrupt as exc:
        return int(getattr(exc, "exit_code", 130))
    except KubemigrateError as exc:
        outcome = {"error": type(exc).__name__, "message": errors.redact(str(exc), guard.hidden)}
        code = 1
    except Exception as exc:  # the project's env.py, models or settings
        failure = ProjectError.from_exception(exc, project, guard.hidden)
        if show_traceback:
            text = "".join(traceback.format_exception(exc))
            print(errors.redact(text, guard.hidden), file=sys.stderr)
        outcome = {"error": "ProjectError", "message": str(failure)}
        code = 1
    report.write_text(json.dumps(outcome), encoding="utf-8")
    return code


def _command(layout: Layout, command: str, arguments: dict[str, Any], guard: Guard) -> list[str]:
    from alembic.config import Config

    from kubemigrate import migrations

    config = Config(str(layout.ini))
    with migrations.alembic_errors(), guard.connection_errors():
        return [str(path) for path in migrations.alembic_command(config, command, arguments)]


def _shown(path: Path | None, project: Path) -> Path | str:
    if path is None:
        return "env.py"
    try:
        return path.relative_to(project)
    except ValueError:
        return path


if __name__ == "__main__":
    sys.exit(main())
