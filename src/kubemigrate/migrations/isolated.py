"""Alembic in a child process, for a project's own env.py: the parent's side.

An env.py that builds its own engine (from `DATABASE_URL`, or from the application's settings)
cannot be handed kubemigrate's connection. Such a project's commands run in a child process, `python
-m kubemigrate.migrations.isolated_main INI COMMAND ARGUMENTS` (the child's side is that module),
started in the ini's directory as the project's developers run `alembic` there, with the variables
`KUBEMIGRATE_EXPORT` names in its environment (the resolved database's URL or parts; nowhere else).

The parent resolves the database (opening a tunnel if it must), holds the migration lock on its
own connection for the whole run, tells the child the session settings (lock and statement
timeouts, the dead-client check) when it tells it to go, stops it on Ctrl-C or SIGTERM, and
reports a lost tunnel. The child sets them with SQL on env.py's own connection, whatever its
driver. The child reports its outcome in a small JSON file whose path the parent gives it.
"""

from __future__ import annotations

import json
import queue
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubemigrate import errors
from kubemigrate.errors import DatabaseError, KubemigrateError, MigrationError
from kubemigrate.postgres.urls import URL

if TYPE_CHECKING:
    from kubemigrate.migrations.layout import Layout
    from kubemigrate.migrations.ledger_hook import Recorder
    from kubemigrate.postgres.connections import Database
    from kubemigrate.settings.declared import Settings

CHILD = "kubemigrate.migrations.isolated_main"
# What an offline command's env.py is given: it names the dialect, and reaches nothing.
OFFLINE = URL("postgresql", username="offline", host="localhost", database="offline")
# What the parent tells the child, in its environment (none of it secret).
REPORT = "KUBEMIGRATE_CHILD_REPORT"
TARGET = "KUBEMIGRATE_CHILD_TARGET"
EXPORTED = "KUBEMIGRATE_CHILD_EXPORTED"
SECRETS = "KUBEMIGRATE_CHILD_SECRETS"  # those of them that hold the password
TRACEBACK = "KUBEMIGRATE_CHILD_TRACEBACK"
PROJECT = "KUBEMIGRATE_CHILD_PROJECT"


class Child:
    """A child Alembic process for `layout`'s env.py, started at once so that it imports
    Alembic and SQLAlchemy while the parent prepares (takes the lock); it runs its command when
    told to `go`, and `finish` waits for it and returns what it reported.

    `db` is the resolved database (None: an offline command, which reaches no database; env.py
    and the application's settings then get the placeholder parts of `OFFLINE`, so that a
    revision file that imports the application can be loaded).
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
        from kubemigrate.postgres.exports import names, render, secret_names
        from kubemigrate.process import children, programs
        from kubemigrate.settings.declared import SECRET_NAMES

        self.settings, self.layout, self.command, self.db = settings, layout, command, db
        url = db.url if db is not None else OFFLINE
        self.report = Path(tempfile.mkdtemp(prefix="kubemigrate-")) / "report.json"
        env = {
            **children.plain_environ(SECRET_NAMES),
            **render(settings.export, url, settings.driver),
            REPORT: str(self.report),
            EXPORTED: ",".join(names(settings.export)),
            SECRETS: ",".join(secret_names(settings.export)),
            PROJECT: str(settings.project_dir),
            TRACEBACK: "1" if errors.wants_traceback(settings.traceback) else "",
        }
        if db is not None:
            env[TARGET] = json.dumps(_where(db.url))
        self.word: queue.Queue[bytes | None] = queue.Queue()
        self.process, self.errors = children.start_relayed(
            programs.command(sys.executable),
            "-m",
            CHILD,
            str(layout.ini),
            command,
            json.dumps(arguments),
            env=env,
            cwd=str(layout.directory),
            stdin=self.word,
        )

    def go(self, server_version: int = 0, ledger: Recorder | None = None) -> None:
        """Run the command; with `server_version` (the parent holds the lock) env.py's
        connection gets the migration session's settings; with `ledger`, the child writes
        the ledger's rows as it does."""
        from kubemigrate.postgres.locking import migration_session

        session = migration_session(self.settings, server_version) if server_version else {}
        word = {"session": session, "ledger": ledger_word(ledger)}
        self.word.put(json.dumps(word).encode() + b"\n")
        self.word.put(None)

    def finish(self) -> dict[str, Any]:
        """Wait for the child; what it reported, or its failure as an error."""
        from kubemigrate.process import children

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
        from kubemigrate.process import children

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


def ledger_word(ledger: Recorder | None) -> dict[str, Any] | None:
    """What the child needs to write the ledger's rows as `ledger` would (None: none)."""
    if ledger is None:
        return None
    return {
        "schema": ledger.table.schema,
        "environment": ledger.environment,
        "run_id": ledger.run_id,
    }


def _where(url: Any) -> dict[str, str]:
    """Host, port, database and user of a URL (what the child compares; no password)."""
    from kubemigrate.postgres.urls import libpq_parameters

    parameters = libpq_parameters(url)
    return {
        "host": parameters.get("host", ""),
        "port": parameters.get("port", "5432"),
        "dbname": parameters.get("dbname", ""),
        "user": parameters.get("user", ""),
    }


def _read(report: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(report.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}
