"""The lock each statement takes and whether it rewrites the table, from PostgreSQL's
documented lock levels (inferred, not measured), and the findings they make: first match wins."""

from __future__ import annotations

import re

from kubemigrate.postgres.statements import split
from kubemigrate.review.model import BLOCKING, Finding, Lock

# First match wins; `{t}` is the table name.
LOCKS: list[tuple[re.Pattern[str], Lock]] = [
    (
        re.compile(r"^CREATE\s+(UNIQUE\s+)?INDEX\s+CONCURRENTLY", re.I),
        Lock("SHARE UPDATE EXCLUSIVE"),
    ),
    (re.compile(r"^CREATE\s+(UNIQUE\s+)?INDEX", re.I), Lock("SHARE")),
    (re.compile(r"^DROP\s+INDEX\s+CONCURRENTLY", re.I), Lock("SHARE UPDATE EXCLUSIVE")),
    (re.compile(r"^DROP\s+INDEX", re.I), Lock("ACCESS EXCLUSIVE")),
    (re.compile(r"^DROP\s+TABLE", re.I), Lock("ACCESS EXCLUSIVE", breaks="drops a table")),
    (
        re.compile(r"^ALTER\s+TABLE\s+\S+\s+RENAME\s+TO", re.I),
        Lock("ACCESS EXCLUSIVE", breaks="renames a table"),
    ),
    (
        re.compile(r"^ALTER\s+TABLE.*\sRENAME\s+(COLUMN\s+)?\S+\s+TO", re.I | re.S),
        Lock("ACCESS EXCLUSIVE", breaks="renames a column"),
    ),
    (
        re.compile(r"^ALTER\s+TABLE.*\sDROP\s+COLUMN", re.I | re.S),
        Lock("ACCESS EXCLUSIVE", breaks="drops a column"),
    ),
    (
        re.compile(r"^ALTER\s+TABLE.*\sALTER\s+COLUMN\s+\S+\s+(SET\s+DATA\s+)?TYPE", re.I | re.S),
        Lock("ACCESS EXCLUSIVE", rewrite=True, breaks="changes a column's type"),
    ),
    (
        re.compile(r"^ALTER\s+TABLE.*\sSET\s+NOT\s+NULL", re.I | re.S),
        Lock("ACCESS EXCLUSIVE", breaks="adds NOT NULL"),
    ),
    (
        re.compile(
            r"^ALTER\s+TABLE.*\sADD\s+(COLUMN\s+)?\S+\s+[^,]*NOT\s+NULL(?![^,]*DEFAULT)",
            re.I | re.S,
        ),
        Lock("ACCESS EXCLUSIVE", breaks="adds a NOT NULL column without a default"),
    ),
    (
        re.compile(r"^ALTER\s+TABLE.*\sADD\s+(CONSTRAINT\s+\S+\s+)?FOREIGN\s+KEY", re.I | re.S),
        Lock("SHARE ROW EXCLUSIVE"),
    ),
    (re.compile(r"^ALTER\s+TABLE", re.I), Lock("ACCESS EXCLUSIVE")),
    (re.compile(r"^(UPDATE|DELETE|INSERT|MERGE)\b", re.I), Lock("ROW EXCLUSIVE")),
    (
        re.compile(r"^(TRUNCATE|VACUUM\s+FULL|CLUSTER)\b", re.I),
        Lock("ACCESS EXCLUSIVE", rewrite=True),
    ),
]


TABLE = re.compile(
    r"^(?:ALTER\s+TABLE(?:\s+ONLY)?(?:\s+IF\s+EXISTS)?|DROP\s+TABLE(?:\s+IF\s+EXISTS)?|"
    r"CREATE\s+TABLE(?:\s+IF\s+NOT\s+EXISTS)?|UPDATE|DELETE\s+FROM|INSERT\s+INTO|TRUNCATE)"
    r"\s+(?P<table>[\w.\"]+)|^CREATE\s+(?:UNIQUE\s+)?INDEX\s.*?\sON\s+(?:ONLY\s+)?(?P<on>[\w.\"]+)",
    re.I | re.S,
)


def own_statements(sql: str) -> list[str]:
    """The migration's own statements (not BEGIN, COMMIT, nor the bookkeeping of
    alembic_version)."""
    return [
        text
        for text in split(sql)
        if "alembic_version" not in text and not re.fullmatch(r"(BEGIN|COMMIT)", text, re.I)
    ]


def lock_of(statement: str) -> Lock | None:
    for pattern, lock in LOCKS:
        if pattern.search(statement):
            return lock
    return None


def table_of(statement: str) -> str | None:
    match = TABLE.search(statement)
    if match is None:
        return None
    return (match["table"] or match["on"] or "").strip('"').split(".")[-1].strip('"') or None


def inferred(statements: list[str]) -> list[Finding]:
    """A finding per statement that blocks the application or breaks the running code."""
    findings = []
    for statement in statements:
        lock, table = lock_of(statement), table_of(statement)
        if lock is None or statement.upper().startswith("CREATE TABLE"):
            continue
        if lock.breaks:
            findings.append(
                Finding(
                    "breaks-running-code",
                    "error",
                    statement,
                    lock.level,
                    lock.rewrite,
                    table,
                    f"{lock.breaks}: the pods still running the old code fail; expand, then "
                    "contract over two releases",
                )
            )
        elif lock.rewrite or lock.level in ("ACCESS EXCLUSIVE", "SHARE"):
            findings.append(lock_finding(statement, lock.level, lock.rewrite, table))
    return findings


def note(rule: str, message: str, severity: str = "warning") -> Finding:
    """A finding about the revision as a whole, not about one of its statements."""
    return Finding(rule, severity, "", None, False, None, message)


def lock_finding(
    statement: str, level: str, rewrite: bool, table: str | None, *, measured: bool = False
) -> Finding:
    """A warning that `statement` rewrites `table`, else that it blocks the application, while
    holding lock `level`."""
    if rewrite:
        message = "rewrites the table while holding the lock"
        return Finding(
            "rewrites-table", "warning", statement, level, True, table, message, measured
        )
    message = f"blocks {BLOCKING[level]} on the table while it runs"
    return Finding("blocking-lock", "warning", statement, level, False, table, message, measured)
