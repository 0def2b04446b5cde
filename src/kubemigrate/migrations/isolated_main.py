"""Alembic in a child process, for a project's own env.py: the child's side, `python -m
kubemigrate.migrations.isolated_main INI COMMAND ARGUMENTS` (`kubemigrate.migrations.isolated` is
the parent's).

It imports Alembic, waits for the parent's word (the parent holds the migration lock by then),
and runs the command. A wrapper around Alembic's `EnvironmentContext.configure` sees the
connection env.py opened before any migration runs, sync or async (`run_sync`), on any driver:
if it reaches another host, port, database or user than the target the parent resolved, the
run stops there and nothing is applied. Otherwise the wrapper sets the migration session's
settings on it with SQL (timeouts, the dead-client check), keeps one transaction per migration,
and removes the exported variables from the environment once env.py has its connection, so that
no later child (a post-write hook) inherits them. The outcome goes to the report file the
parent named.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubemigrate import errors
from kubemigrate.errors import DatabaseError, KubemigrateError, MigrationError
from kubemigrate.migrations.isolated import (
    EXPORTED,
    PROJECT,
    REPORT,
    SECRETS,
    TARGET,
    TRACEBACK,
)
from kubemigrate.migrations.ledger_hook import Recorder, hooked

if TYPE_CHECKING:
    from kubemigrate.migrations.layout import Layout


class Guard:
    """Wraps `EnvironmentContext.configure`: checks env.py's connection, keeps one transaction
    per migration, and hides the exported variables once env.py has connected."""

    def __init__(
        self, env_py: str, expected: dict[str, str] | None, exported: list[str], secret: list[str]
    ) -> None:
        self.env_py = env_py
        self.expected = expected
        self.exported = exported
        self.hidden = [os.environ.get(name, "") for name in secret]  # never shown
        self.configured = False
        self.session: dict[str, str] = {}  # the migration session's settings, from the parent

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
        """Stop unless `connection` reaches the expected database (offline: nothing to check);
        then give it the session's settings."""
        self.configured = True
        for name in self.exported:
            os.environ.pop(name, None)
        if connection is None or self.expected is None:
            return
        _interruptible(connection)
        found = reached(connection)
        if found is not None and not same_database(found, self.expected):
            raise self.wrong_database(found)
        if self.session:
            from kubemigrate.postgres.locking import set_session

            set_session(connection, self.session)

    def wrong_database(self, found: dict[str, str]) -> MigrationError:
        return MigrationError(
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

        from kubemigrate.postgres.connections import driver_message

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
    """On psycopg2, a signal cancels the running statement (`kubemigrate.process.interrupts`);
    psycopg
    3 cancels it on an interrupt by itself."""
    driver = getattr(getattr(connection, "dialect", None), "driver", "")
    if driver == "psycopg2":
        from kubemigrate.process.interrupts import use_interruptible_waits

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
    secret = [name for name in os.environ.pop(SECRETS, "").split(",") if name]
    project = Path(os.environ.pop(PROJECT, ".")).resolve()
    show_traceback = os.environ.pop(TRACEBACK, "") == "1"

    from kubemigrate.migrations.logs import configure_logging
    from kubemigrate.process.interrupts import install_signal_handlers

    install_signal_handlers()
    configure_logging()  # Alembic's progress lines, as in the task's own process
    from kubemigrate.migrations.layout import Layout

    layout = Layout.read(Path(ini))
    guard = Guard(str(_shown(layout.env_py, project)), expected, exported, secret)
    guard.install()
    from alembic import command as _preloaded  # noqa: F401  (imported while the parent prepares)

    word = sys.stdin.readline()
    if not word:
        return 0  # the parent gave up before the word (it could not take the lock)
    told = json.loads(word)
    guard.session = told.get("session") or {}
    ledger = child_recorder(told.get("ledger"), project)
    outcome: dict[str, Any] = {}
    code = 0
    try:
        with hooked(ledger):
            outcome["result"] = _command(layout, command, arguments, guard)
    except KeyboardInterrupt as exc:
        return int(getattr(exc, "exit_code", 130))
    except KubemigrateError as exc:
        outcome = {"error": type(exc).__name__, "message": errors.redact(str(exc), guard.hidden)}
        code = 1
    except Exception as exc:  # the project's revision files, env.py, models or settings
        from kubemigrate.migrations.failures import project_failure

        failure = project_failure(exc, layout.ini, project, guard.hidden)
        if show_traceback:
            text = "".join(traceback.format_exception(exc))
            print(errors.redact(text, guard.hidden), file=sys.stderr)
        outcome = {"error": type(failure).__name__, "message": str(failure)}
        code = 1
    report.write_text(json.dumps(outcome), encoding="utf-8")
    return code


def child_recorder(word: dict[str, Any] | None, directory: Path) -> Recorder | None:
    """The child's writer of the ledger's rows, from the parent's `isolated.ledger_word`."""
    if not word:
        return None
    from kubemigrate.migrations.ledger import Table

    return Recorder(Table(word["schema"]), word["environment"], word["run_id"], directory)


def _command(layout: Layout, command: str, arguments: dict[str, Any], guard: Guard) -> Any:
    from alembic.config import Config

    from kubemigrate.migrations import executor, failures

    config = Config(str(layout.ini))
    with failures.alembic_errors(), guard.connection_errors():
        return executor.alembic_command(config, command, arguments)


def _shown(path: Path | None, project: Path) -> Path | str:
    if path is None:
        return "env.py"
    try:
        return path.relative_to(project)
    except ValueError:
        return path


if __name__ == "__main__":
    sys.exit(main())
