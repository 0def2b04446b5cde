"""The findings of the inferred locks: for each statement, read on PostgreSQL's parse tree
(`kubemigrate.review.rules`), whether it breaks the code still running, rewrites or scans a
table under its lock, or blocks the application while it runs; and a statement the parser
cannot read, said as such."""

from __future__ import annotations

import re

from kubemigrate.postgres.statements import split
from kubemigrate.review.model import ACCESS_EXCLUSIVE, BLOCKING, Classified, Effect, Finding
from kubemigrate.review.rules import classify
from kubemigrate.review.schema import Schema

# Locks whose statement is worth a warning even when brief: they stop reads or writes.
WARNED = (ACCESS_EXCLUSIVE, "SHARE")


def own_statements(sql: str) -> list[str]:
    """The migration's own statements (not BEGIN, COMMIT, nor the bookkeeping of
    alembic_version)."""
    return [
        text
        for text in split(sql)
        if "alembic_version" not in text and not re.fullmatch(r"(BEGIN|COMMIT)", text, re.I)
    ]


def classified(statements: list[str], schema: Schema, server_major: int) -> list[Classified]:
    """Each statement read in order: what the ones before it changed is known to the next."""
    return [classify(statement, schema, server_major) for statement in statements]


def summary(statement: Classified) -> Effect | None:
    """One effect for the whole statement: its strongest lock (and that lock's table), a
    rewrite or scan if any subcommand does one, every reason it breaks running code."""
    strongest = statement.strongest()
    if strongest is None:
        return None
    reasons = list(dict.fromkeys(e.breaks for e in statement.effects if e.breaks))
    return Effect(
        strongest.rule,
        strongest.table,
        strongest.lock,
        rewrite=any(e.rewrite for e in statement.effects),
        scan=any(e.scan for e in statement.effects),
        breaks="; ".join(reasons) or None,
    )


def inferred(statements: list[Classified]) -> list[Finding]:
    """A finding per statement that breaks the running code, rewrites or scans a table under
    its lock, or blocks the application; one per statement the parser cannot read."""
    findings = []
    for statement in statements:
        if statement.error is not None:
            findings.append(
                Finding(
                    "unparsed",
                    "warning",
                    statement.statement,
                    None,
                    False,
                    None,
                    f"{statement.error}: its locks are not known; review it by hand",
                )
            )
            continue
        effect = summary(statement)
        if effect is None:
            continue
        if effect.breaks:
            findings.append(
                Finding(
                    "breaks-running-code",
                    "error",
                    statement.statement,
                    effect.lock,
                    effect.rewrite,
                    effect.table,
                    f"{effect.breaks}: the pods still running the old code fail; expand, then "
                    "contract over two releases",
                )
            )
        elif effect.rewrite or effect.scan or effect.lock in WARNED:
            findings.append(
                lock_finding(
                    statement.statement, effect.lock, effect.rewrite, effect.table, scan=effect.scan
                )
            )
    return findings


def added(statements: list[Classified]) -> list[str]:
    """What the statements add that code could read: new tables, and tables given a column."""
    found = []
    for statement in statements:
        if statement.creates:
            found.append(statement.creates)
        found += [f"{e.table} (a column)" for e in statement.effects if e.rule == "add-column"]
    return list(dict.fromkeys(found))


def note(rule: str, message: str, severity: str = "warning") -> Finding:
    """A finding about the revision as a whole, not about one of its statements."""
    return Finding(rule, severity, "", None, False, None, message)


def lock_finding(
    statement: str,
    level: str,
    rewrite: bool,
    table: str | None,
    *,
    measured: bool = False,
    scan: bool = False,
) -> Finding:
    """A warning that `statement` rewrites or scans `table`, else that it blocks the
    application, while holding lock `level`."""
    if rewrite:
        message = "rewrites the table while holding the lock"
        return Finding(
            "rewrites-table", "warning", statement, level, True, table, message, measured
        )
    if scan:
        blocked = BLOCKING.get(level)
        message = "reads the whole table while holding the lock" + (
            f", which blocks {blocked}" if blocked else ", without blocking writes"
        )
        return Finding("scans-table", "warning", statement, level, False, table, message, measured)
    message = f"blocks {BLOCKING[level]} on the table while it runs"
    return Finding("blocking-lock", "warning", statement, level, False, table, message, measured)
