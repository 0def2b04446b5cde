"""`inv db.plan`: what the pending migrations will do to the database, revision by revision.

For each revision between the database's revision (or `--since REV`) and head: its SQL,
rendered for that revision alone (`PREV:REV`; one that cannot render offline, a data migration
calling `op.get_bind()`, is "online only"); squawk's findings on that SQL alone, with the target
server's major version and Alembic's transaction assumed; for each statement the lock it takes
and whether it rewrites the table (from PostgreSQL's documented lock levels: inferred, not
measured); whether the code still running during a rolling deploy survives it; whether
`downgrade()` is written and whether it loses data; and, when the database is reachable, the
row estimate and size of each table touched, read-only.

With `--base GITREF`, the revisions are those the working tree adds to GITREF's
(`kubemigrate.branches`); with `--rehearse`, they run on a throwaway copy and the locks and
rewrites seen there replace the inferred ones (`kubemigrate.rehearsal`); each finding says
which it holds.

The JSON shape (`--format json`) is versioned by its `version` field (1; new keys may be added
within a version, none is removed or changes meaning):

    {"version": 1, "environment": ..., "database": ..., "from": REV|null, "base": GITREF|null,
     "heads": [...], "check": str,
     "rehearsal": null | {"server", "schema", "failed": null | "REV: error"},
     "revisions": [{"revision", "message", "sql", "online_only",
       "findings": [{"rule", "severity", "statement", "lock", "rewrite", "table", "message",
                     "measured"}],
       "tables": [{"name", "rows", "bytes"}], "downgrade": {"present", "loses_data"},
       "rehearsed": null | [{"statement", "locks": {TABLE: LOCK}, "rewrites": [TABLE],
                             "measured"}]}]}
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubemigrate.errors import KubemigrateError, MigrationError
from kubemigrate.statements import split

if TYPE_CHECKING:
    from kubemigrate import rehearsal
    from kubemigrate.revisions import Graph
    from kubemigrate.settings import Settings

VERSION = 1
SEVERITIES = ("warning", "error")
COMMENT_LIMIT = 65536  # GitHub's pull-request comment
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
# The lock levels that stop the application's queries, and what they stop.
BLOCKING = {
    "SHARE": "writes",
    "SHARE ROW EXCLUSIVE": "writes",
    "EXCLUSIVE": "reads with FOR UPDATE and writes",
    "ACCESS EXCLUSIVE": "reads and writes",
}
# squawk's rules about the session settings kubemigrate sets itself.
OURS = {"require-lock-timeout", "require-statement-timeout", "prefer-robust-stmts"}


@dataclass(frozen=True)
class Lock:
    """What one statement does to a table, by PostgreSQL's documented lock levels."""

    level: str
    rewrite: bool = False
    breaks: str | None = None  # why the code still running would fail


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


@dataclass
class Finding:
    rule: str
    severity: str
    statement: str
    lock: str | None
    rewrite: bool
    table: str | None
    message: str
    measured: bool = False  # lock and rewrite seen in the rehearsal, not inferred


@dataclass
class RevisionPlan:
    revision: str
    message: str
    sql: str
    online_only: bool
    findings: list[Finding] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)
    downgrade: dict[str, bool] = field(default_factory=dict)
    rehearsed: list[dict[str, Any]] | None = None  # per statement: locks, rewrites, measured


@dataclass
class Plan:
    environment: str
    database: str
    start: str | None
    heads: list[str]
    check: str
    revisions: list[RevisionPlan]
    base: str | None = None  # --base GITREF
    rehearsal: dict[str, Any] | None = None  # server, schema, failed

    def worst(self) -> str | None:
        """The highest severity of any finding (None: no finding)."""
        found = {f.severity for r in self.revisions for f in r.findings}
        for severity in reversed(SEVERITIES):
            if severity in found:
                return severity
        return None

    def fails(self, fail_on: str) -> bool:
        """Whether a finding is at least as severe as `fail_on` ("never": none is)."""
        worst = self.worst()
        if fail_on == "never" or worst is None:
            return False
        return SEVERITIES.index(worst) >= SEVERITIES.index(fail_on)

    def as_dict(self) -> dict[str, Any]:
        shape = asdict(self)
        shape["from"] = shape.pop("start")
        return {"version": VERSION, **shape}


# -- building the plan ---------------------------------------------------------------------------


def plan(
    settings: Settings,
    *,
    since: str | None = None,
    base: str | None = None,
    rehearse: bool = False,
) -> Plan:
    """The plan of the revisions after `since` (default: the database's revision) to head; with
    `base` (a git ref), of the revisions the working tree adds to that ref's; `rehearse`: run
    them on a throwaway copy, and measure their locks and rewrites."""
    from kubemigrate import branches
    from kubemigrate.migrations import check_verdict, graph, layout

    if since is not None and base is not None:
        raise MigrationError("--since and --base both say where the plan starts: pass one")
    revisions_graph = graph(settings)
    heads = revisions_graph.heads()
    known, shown, server_major = _database(settings)
    if base is not None:
        versions = layout(settings).versions
        start = branches.added(settings, revisions_graph, versions, base).base_head
    else:
        start = since if since is not None else _single(known)
    chain = _chain(revisions_graph, start)
    revisions = _revisions(settings, revisions_graph, chain, server_major)
    rehearsed = None
    if rehearse and chain:
        rehearsed = _rehearse(settings, revisions, start, known, server_major)
    if known is not None:
        _sizes(settings, revisions)
    check = "pending revisions: run it after the upgrade" if chain else "database not reachable"
    if known is not None and not chain:
        check = check_verdict(settings)
    if rehearsed is not None and rehearsed["check"] is not None:
        check = f"{rehearsed['check']} (on the rehearsal's copy, after the pending revisions)"
    return Plan(settings.environment, shown, start, heads, check, revisions, base, rehearsed)


def _database(settings: Settings) -> tuple[tuple[str, ...] | None, str, int]:
    """The database's revisions (None: not reachable), its URL shown, its major version."""
    from kubemigrate.migrations import current_heads
    from kubemigrate.target import connect_plainly, database

    try:
        db = database(settings)
        with connect_plainly(db) as connection:
            return current_heads(connection), db.shown, int(connection.server_version) // 10000
    except KubemigrateError as exc:
        return None, f"not reachable ({exc})", 0


def _single(heads: tuple[str, ...] | None) -> str | None:
    if not heads:
        return None
    if len(heads) > 1:
        raise MigrationError("the database has several heads; name where to start with --since")
    return heads[0]


def _chain(graph: Graph, start: str | None) -> list[str]:
    """The revisions after `start` (None or "base": from base) up to head, in the order they
    run; `start` may be a unique prefix of a revision id, as Alembic takes one."""
    try:
        begin = graph.resolve(start) if start not in (None, "base") else None
    except LookupError as exc:
        raise MigrationError(f"cannot plan from {start}: {exc}") from None
    return graph.chain(begin)


def _revisions(
    settings: Settings, graph: Graph, chain: list[str], server_major: int
) -> list[RevisionPlan]:
    """The plan of each revision of `chain`, its SQL rendered alone (all in one go, where
    env.py runs)."""
    from kubemigrate.migrations import offline_sql

    spans = [f"{graph.parents[r][0]}:{r}" if graph.parents[r] else r for r in chain]
    rendered = offline_sql(settings, spans)
    return [
        _revision(graph, revision, sql, server_major, settings)
        for revision, sql in zip(chain, rendered, strict=True)
    ]


def _revision(
    graph: Graph, revision: str, sql: str | None, server_major: int, settings: Settings
) -> RevisionPlan:
    doc = graph.docs.get(revision, "")
    result = RevisionPlan(
        revision=revision,
        message=doc.strip().splitlines()[0] if doc.strip() else "",
        sql=sql or "",
        online_only=sql is None,
        downgrade=_downgrade(graph.paths[revision]),
    )
    if sql is None:
        result.findings.append(
            _note(
                "online-only", "cannot be rendered offline (it reads the database); review its code"
            )
        )
        return result
    statements = _statements(sql)
    result.findings += _inferred(statements)
    result.findings += _squawk(settings, statements, server_major)
    if not result.downgrade["present"]:
        result.findings.append(_note("no-downgrade", "downgrade() does nothing"))
    elif result.downgrade["loses_data"]:
        result.findings.append(
            _note("downgrade-loses-data", "downgrade() drops a table or column: its data is lost")
        )
    return result


def _statements(sql: str) -> list[str]:
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


def _inferred(statements: list[str]) -> list[Finding]:
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
            findings.append(_lock_finding(statement, lock.level, lock.rewrite, table))
    return findings


def _note(rule: str, message: str, severity: str = "warning") -> Finding:
    """A finding about the revision as a whole, not about one of its statements."""
    return Finding(rule, severity, "", None, False, None, message)


def _lock_finding(
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


def _squawk(settings: Settings, statements: list[str], server_major: int) -> list[Finding]:
    """squawk's findings on the statements, for the target's major version."""
    from kubemigrate.linter import run_squawk

    if not statements:
        return []
    sql = ";\n".join(statements) + ";\n"
    output = run_squawk(
        settings, sql, server_major, "--reporter", "json", "--assume-in-transaction"
    )
    starts = _line_starts(statements)
    findings = []
    for item in json.loads(output or "[]"):
        rule = str(item.get("rule_name", ""))
        if rule in OURS:
            continue
        statement = _owner(starts, int(item.get("line", 0)), statements)
        lock = lock_of(statement)
        findings.append(
            Finding(
                rule,
                "error" if rule in ERROR_RULES else "warning",
                statement,
                lock.level if lock else None,
                bool(lock and lock.rewrite),
                table_of(statement),
                str(item.get("message", "")),
            )
        )
    return findings


def _line_starts(statements: list[str]) -> list[int]:
    starts, line = [], 0
    for statement in statements:
        starts.append(line)
        line += statement.count("\n") + 1
    return starts


def _owner(starts: list[int], line: int, statements: list[str]) -> str:
    index = max((i for i, start in enumerate(starts) if start <= line), default=0)
    return statements[index]


def _downgrade(path: Path) -> dict[str, bool]:
    """Whether the revision's downgrade() does something, and whether it drops data."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return {"present": False, "loses_data": False}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "downgrade":
            body = [
                n
                for n in node.body
                if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
            ]
            present = any(not isinstance(n, ast.Pass) for n in body)
            text = ast.unparse(node)
            loses = bool(re.search(r"drop_table|drop_column|DROP\s+(TABLE|COLUMN)", text, re.I))
            return {"present": present, "loses_data": loses}
    return {"present": False, "loses_data": False}


def _sizes(settings: Settings, revisions: list[RevisionPlan]) -> None:
    """Row estimate and size of every table the revisions touch (read-only)."""
    from kubemigrate.target import connect_plainly, database

    names = sorted({f.table for r in revisions for f in r.findings if f.table})
    if not names:
        return
    with connect_plainly(database(settings)) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, greatest(c.reltuples, 0)::bigint, pg_total_relation_size(c.oid) "
            "FROM pg_class c WHERE c.relkind IN ('r', 'p') AND c.relname = ANY(%s) "
            "AND pg_table_is_visible(c.oid)",
            (names,),
        )
        sizes = {name: (int(rows), int(size)) for name, rows, size in cursor.fetchall()}
        connection.rollback()
    for revision in revisions:
        touched = sorted({f.table for f in revision.findings if f.table and f.table in sizes})
        revision.tables = [{"name": t, "rows": sizes[t][0], "bytes": sizes[t][1]} for t in touched]


def _rehearse(
    settings: Settings,
    revisions: list[RevisionPlan],
    start: str | None,
    known: tuple[str, ...] | None,
    server_major: int,
) -> dict[str, Any]:
    """Run the revisions on a throwaway copy (`kubemigrate.rehearsal`); each finding whose
    statement ran there takes the lock and rewrite measured, and a measured rewrite or blocking
    lock no rule inferred becomes a finding of its own."""
    from kubemigrate import rehearsal

    done = rehearsal.rehearse(
        settings,
        [
            rehearsal.Revision(r.revision, None if r.online_only else split(r.sql))
            for r in revisions
        ],
        start=start,
        recorded=known,
        server_major=server_major,
    )
    for revision in revisions:
        statements = done.revisions.get(revision.revision)
        if statements is None or revision.online_only:  # not reached, or applied unmeasured
            continue
        mine = set(_statements(revision.sql))
        own = [s for s in statements if s.statement in mine]
        revision.rehearsed = [asdict(s) for s in own]
        for statement in own:
            _take_measures(revision, statement)
    failed = None
    if done.failed is not None:
        at, error = done.failed
        failed = f"{at}: {error}"
        for revision in revisions:
            if revision.revision == at:
                revision.findings.append(
                    _note("rehearsal-failed", f"failed on a copy of the schema: {error}", "error")
                )
    return {"server": done.server, "schema": done.schema, "failed": failed, "check": done.check}


def _take_measures(revision: RevisionPlan, measured: rehearsal.Statement) -> None:
    """The statement's findings take its measured lock and rewrite; a statement no rule flagged
    gets a finding for each table it rewrote or blocked."""
    if not measured.measured:
        return
    own = [f for f in revision.findings if f.statement == measured.statement]
    for finding in own:
        if finding.table in measured.locks:
            finding.lock = measured.locks[finding.table]
            finding.rewrite = finding.table in measured.rewrites
            finding.measured = True
    if own:
        return
    for table, level in measured.locks.items():
        rewrites = table in measured.rewrites
        if rewrites or level in BLOCKING:
            revision.findings.append(
                _lock_finding(measured.statement, level, rewrites, table, measured=True)
            )


# -- showing it ----------------------------------------------------------------------------------


def size(revision: RevisionPlan, table: str | None) -> str:
    for known in revision.tables:
        if known["name"] == table:
            return f" ({_rows(known['rows'])} rows, {_bytes(known['bytes'])})"
    return ""


def _rows(count: int) -> str:
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return str(count)


def _bytes(count: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def describe(revision: RevisionPlan, finding: Finding) -> str:
    """One line: rule, lock on the table (its size), rewrite, message."""
    where = ""
    if finding.lock and finding.table:
        how = " (measured)" if finding.measured else ""
        where = f": {finding.lock}{how} on {finding.table}{size(revision, finding.table)}"
    rewrite = ", rewrites the table" if finding.rewrite else ""
    return f"{finding.severity}: {finding.rule}{where}{rewrite}: {finding.message}"


def locks_line(result: Plan) -> str:
    """Which lock levels were measured and which inferred."""
    rehearsal = result.rehearsal
    if rehearsal is None:
        return "locks: inferred from PostgreSQL's documented lock levels (--rehearse measures them)"
    line = (
        f"locks: those marked (measured) were taken on a rehearsal on {rehearsal['server']}, "
        f"from {rehearsal['schema']}; the others are inferred"
    )
    if rehearsal["failed"]:
        line += f"; the rehearsal stopped at {rehearsal['failed']}"
    return line


def _span(result: Plan) -> str:
    start = result.start or "base"
    if result.base is not None:
        start += f" ({result.base}'s head)"
    return f"from {start} to {', '.join(result.heads)}: {len(result.revisions)} revision(s)"


def as_text(result: Plan) -> str:
    lines = [
        f"Plan for {result.environment} ({result.database}), {_span(result)}",
        locks_line(result),
    ]
    for revision in result.revisions:
        lines.append(f"\n{revision.revision}  {revision.message}")
        down = revision.downgrade
        undo = "downgrade: " + (
            "none" if not down["present"] else "loses data" if down["loses_data"] else "yes"
        )
        lines.append(f"  {undo}")
        for finding in revision.findings:
            lines.append(f"  {describe(revision, finding)}")
    lines.append(f"\ncheck: {result.check}")
    return "\n".join(lines)


def as_markdown(result: Plan, limit: int = COMMENT_LIMIT) -> str:
    """A pull-request comment: a summary table, then a section per revision with its SQL
    folded; only the summary when the whole would pass GitHub's limit."""
    summary = [
        f"### Database plan: {result.environment}, {len(result.revisions)} revision(s)",
        "",
        "| revision | message | errors | warnings | downgrade |",
        "| --- | --- | --- | --- | --- |",
    ]
    for revision in result.revisions:
        errors = sum(f.severity == "error" for f in revision.findings)
        warnings = sum(f.severity == "warning" for f in revision.findings)
        down = revision.downgrade
        undo = "none" if not down["present"] else "loses data" if down["loses_data"] else "yes"
        summary.append(
            f"| `{revision.revision}` | {revision.message} | {errors} | {warnings} | {undo} |"
        )
    summary += ["", f"{_span(result)}; check: {result.check}", "", locks_line(result)]
    sections = []
    for revision in result.revisions:
        sections += ["", f"#### `{revision.revision}` {revision.message}", ""]
        sections += [f"- {describe(revision, f)}" for f in revision.findings] or ["- no findings"]
        body = "online only: not rendered" if revision.online_only else revision.sql.strip()
        sections += [
            "",
            "<details><summary>SQL</summary>",
            "",
            "```sql",
            body,
            "```",
            "",
            "</details>",
        ]
    whole = "\n".join(summary + sections) + "\n"
    if len(whole) <= limit:
        return whole
    return (
        "\n".join([*summary, "", "(the full plan passes the comment limit: run `inv db.plan`)"])
        + "\n"
    )


def as_json(result: Plan) -> str:
    return json.dumps(result.as_dict(), indent=2)
