"""squawk, once per revision: its findings on the revision's statements, for the target
server's major version, as the plan's `Finding`s. The plan holds them, and the release's gate
and `inv db.lint` read them from the plan (`squawk_findings`): one run, one verdict."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from kubemigrate.errors import MigrationError
from kubemigrate.process import children, programs
from kubemigrate.review.locks import summary
from kubemigrate.review.model import Classified, Finding, Plan

if TYPE_CHECKING:
    from kubemigrate.settings.declared import Settings


# squawk's rules whose statement fails on a table with rows or breaks the running code.
ERROR_RULES = {
    "adding-required-field",
    "adding-not-nullable-field",
    "changing-column-type",
    "renaming-column",
    "renaming-table",
    "ban-drop-column",
    "ban-drop-table",
}


# squawk's rules about the session settings kubemigrate sets itself.
OURS = {"require-lock-timeout", "require-statement-timeout", "prefer-robust-stmts"}


def squawk() -> str:
    """The squawk binary: on PATH, or beside this Python (the project's environment)."""
    return programs.find(
        "squawk",
        beside=[Path(sys.executable).parent],
        install="install the squawk-cli package (uv sync)",
        error=MigrationError,
    )


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
        result = children.run(programs.command(squawk()), *options, str(path), timeout=120)
    if result.code not in (0, 1):
        raise MigrationError(result.describe("squawk"))
    return result.output


def findings(settings: Settings, classified: list[Classified], server_major: int) -> list[Finding]:
    """squawk's findings on the statements, for the target's major version; each with the
    lock and table its statement's parse tree gives."""
    if not classified:
        return []
    statements = [c.statement for c in classified]
    by_text = {c.statement: summary(c) for c in classified}
    sql = ";\n".join(statements) + ";\n"
    output = run_squawk(
        settings, sql, server_major, "--reporter", "json", "--assume-in-transaction"
    )
    starts = _line_starts(statements)
    found = []
    for item in json.loads(output or "[]"):
        rule = str(item.get("rule_name", ""))
        if rule in OURS:
            continue
        statement = _owner(starts, int(item.get("line", 0)), statements)
        effect = by_text.get(statement)
        found.append(
            Finding(
                rule,
                "error" if rule in ERROR_RULES else "warning",
                statement,
                effect.lock if effect else None,
                bool(effect and effect.rewrite),
                effect.table if effect else None,
                str(item.get("message", "")),
                source="squawk",
            )
        )
    return found


def _line_starts(statements: list[str]) -> list[int]:
    starts, line = [], 0
    for statement in statements:
        starts.append(line)
        line += statement.count("\n") + 1
    return starts


def _owner(starts: list[int], line: int, statements: list[str]) -> str:
    index = max((i for i, start in enumerate(starts) if start <= line), default=0)
    return statements[index]


def squawk_findings(plan: Plan) -> list[tuple[str, Finding]]:
    """squawk's findings in `plan` (kubemigrate's own rules left out), with their revision:
    what the release's gate and `inv db.lint` refuse."""
    return [
        (revision.revision, finding)
        for revision in plan.revisions
        for finding in revision.findings
        if finding.by_squawk
    ]
