"""Unsafe operations in pending migrations, found by the squawk linter.

The pending migrations are rendered as SQL offline (as `inv db.upgrade --sql` does), preceded
by the lock and statement timeouts kubemigrate sets on migration sessions, and given to
`squawk`. Each finding is attributed to the revision whose SQL contains it. Style rules
(`KUBEMIGRATE_LINT_EXCLUDE`) are left out, so what remains is what can block or break a live
application: a NOT NULL column without a default, a non-concurrent index, a type change that
rewrites a table, dropped columns or tables...
"""

from __future__ import annotations

import io
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kubemigrate import children
from kubemigrate.errors import MigrationError
from kubemigrate.settings import Settings

FINDING = re.compile(r"^.*?:(?P<line>\d+):\d+: (?P<level>\w+): (?P<rule>[\w-]+) (?P<message>.*)$")
MIGRATION = re.compile(r"^-- Running upgrade .*-> (?P<revision>\w+)")


@dataclass(frozen=True)
class Finding:
    revision: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.revision}: {self.rule}: {self.message}"


def squawk() -> str:
    """The squawk binary: on PATH, or beside this Python (the project's environment)."""
    found = shutil.which("squawk") or shutil.which("squawk", path=str(Path(sys.executable).parent))
    if found is None:
        raise MigrationError("squawk not found: install the squawk-cli package (uv sync)")
    return found


def run_squawk(settings: Settings, sql: str, server_major: int, *args: str) -> str:
    """squawk's report (`args` choose its reporter...) on `sql`, for the server's major version
    (0: squawk's default), KUBEMIGRATE_LINT_EXCLUDE left out."""
    options = list(args)
    if server_major:
        options += ["--pg-version", f"{server_major}.0"]
    if settings.lint_exclude:
        options += ["--exclude", ",".join(settings.lint_exclude)]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "migration.sql"
        path.write_text(sql)
        result = children.run(children.command(squawk()), *options, str(path), timeout=120)
    if result.code not in (0, 1):
        raise MigrationError(result.describe("squawk"))
    return result.output


def pending_sql(settings: Settings, start: str | None) -> str:
    """The SQL of the migrations after revision `start` (None: all), with our timeouts first."""
    from kubemigrate.locking import milliseconds
    from kubemigrate.migrations import upgrade_sql

    out = io.StringIO()
    upgrade_sql(settings, start, out)
    prelude = (
        f"SET lock_timeout = '{milliseconds(settings.lock_timeout)}';\n"
        f"SET statement_timeout = '{milliseconds(settings.statement_timeout)}';\n"
    )
    return prelude + out.getvalue()


def lint(settings: Settings, start: str | None, server_major: int = 0) -> list[Finding]:
    """squawk's findings on the migrations after `start`, style rules excluded; with the
    target's `server_major` version (0: squawk's default)."""
    sql = pending_sql(settings, start)
    output = run_squawk(settings, sql, server_major, "--reporter", "gcc")
    revisions = _revision_by_line(sql)
    findings = []
    for line in output.splitlines():
        match = FINDING.match(line)
        if match:
            number = int(match["line"])
            findings.append(Finding(revisions.get(number, "?"), match["rule"], match["message"]))
    return findings


def _revision_by_line(sql: str) -> dict[int, str]:
    """0-based line number (squawk's) -> the revision whose SQL it belongs to."""
    owners, current = {}, "prelude"
    for number, line in enumerate(sql.splitlines()):
        match = MIGRATION.match(line)
        if match:
            current = match["revision"]
        owners[number] = current
    return owners
