"""The ledger against the revision files: `db.validate` and `db.repair`.

Every revision the database has applied (its version table's heads and their ancestors, and
what the ledger says is applied) is compared with its file:

- **edited**: the file's checksum is not the one recorded when it was applied (line endings
  aside), so it would apply differently on the next database;
- **missing**: the ledger says it is applied, and its file is gone;
- **unknown**: the version table includes it, and the ledger has no row for it, or says it was
  downgraded last (bare Alembic, or the ledger was off).

The accepted content of a file is that of its newest upgrade, stamp, baseline or repair row.
`repair` adds a `repair` row accepting the file as it is now (or its absence), with who and why.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubemigrate.errors import MigrationError, shown_path
from kubemigrate.migrations import ledger

if TYPE_CHECKING:
    from kubemigrate.migrations.revisions import Graph
    from kubemigrate.settings.declared import Settings

EDITED, MISSING, UNKNOWN = "edited", "missing", "unknown"
OFF = "the ledger is off (KUBEMIGRATE_LEDGER=false)"
ABSENT = (
    "no ledger in this database yet: the next `inv db.upgrade` (or downgrade, stamp) creates "
    "it, with a baseline row per applied revision"
)


@dataclass(frozen=True)
class Problem:
    """A revision whose file does not match the ledger."""

    kind: str
    revision: str
    path: str | None
    doc: str
    applied: dict[str, Any] | None  # the row that accepted it (none: unknown to the ledger)
    now: str | None  # the file's checksum now

    def line(self, settings: Settings) -> str:
        """One line: what is wrong, when and by whom it was applied, and what to do."""
        named = f"{self.revision} ({self.doc})" if self.doc else self.revision
        env = _env(settings.environment)
        repair = f'`inv db.repair {self.revision} --reason "..."{env}`'
        if self.kind == UNKNOWN:
            return (
                f"unknown: {named} is applied (alembic_version) but the ledger has no row for it "
                f"(applied by bare alembic, or with the ledger off); record it with {repair}"
            )
        when = _applied(self.applied)
        if self.kind == MISSING:
            return (
                f"missing: {named} was applied {when}, and its file is gone; restore it from "
                f"version control, or accept its absence with {repair}"
            )
        shown = shown_path(self.path or "", settings.project_dir)
        return (
            f"edited: {named} was applied {when}, and {shown} has changed since; restore it as "
            f"it was applied, or accept the change with {repair}"
        )

    def as_dict(self) -> dict[str, Any]:
        applied = self.applied or {}
        return {
            "kind": self.kind,
            "revision": self.revision,
            "path": self.path,
            "applied_at": _iso(applied.get("finished_at")),
            "applied_by": applied.get("applied_by"),
            "environment": applied.get("environment"),
            "recorded_checksum": applied.get("checksum"),
            "file_checksum": self.now,
        }


@dataclass(frozen=True)
class Validation:
    """The outcome of `validate`: the ledger's state (on, off, absent), the revisions it
    checked and the problems it found."""

    state: str
    checked: int
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.state == "off":
            return f"{OFF}; nothing to validate"
        if self.state == "absent":
            return ABSENT
        if self.problems:
            return f"{len(self.problems)} applied revision(s) do not match the ledger"
        return f"the ledger matches the migrations: {self.checked} applied revision(s), as applied"

    def as_dict(self, settings: Settings) -> dict[str, Any]:
        return {
            "version": 1,
            "ledger": self.state,
            "valid": self.ok,
            "checked": self.checked,
            "summary": self.summary(),
            "problems": [
                {**problem.as_dict(), "message": problem.line(settings)}
                for problem in self.problems
            ],
        }


def problems(graph: Graph, heads: tuple[str, ...], rows: list[dict[str, Any]]) -> list[Problem]:
    """What does not match, oldest revision first. `rows` are the ledger's, newest first."""
    newest: dict[str, dict[str, Any]] = {}
    accepted: dict[str, dict[str, Any]] = {}
    for entry in rows:
        newest.setdefault(entry["revision"], entry)
        if entry["action"] in ledger.ACCEPTING:
            accepted.setdefault(entry["revision"], entry)
    applied = applied_revisions(graph, heads)
    said = {r for r, row in newest.items() if row["action"] != "downgrade" and r != "base"}
    found: list[Problem] = []
    for revision in _ordered(graph, applied | said):
        row: dict[str, Any] | None = accepted.get(revision)
        path = graph.paths.get(revision)
        if revision not in graph.parents:
            if row is None or row["checksum"] is not None:
                found.append(Problem(MISSING, revision, None, "", row, None))
            continue
        if row is None or newest[revision]["action"] == "downgrade":  # applied outside it
            found.append(Problem(UNKNOWN, revision, _str(path), _doc(graph, revision), None, None))
            continue
        now = ledger.checksum(path) if path is not None else None
        if now != row["checksum"]:
            found.append(Problem(EDITED, revision, _str(path), _doc(graph, revision), row, now))
    return found


def applied_revisions(graph: Graph, heads: tuple[str, ...]) -> set[str]:
    """The revisions the version table's `heads` include: themselves and their ancestors."""
    return set(heads) | {a for head in heads for a in graph.ancestors(head)}


def validate(settings: Settings, revisions: Graph) -> Validation:
    """Compare the configured database's ledger with the revision files (`revisions`)."""
    from kubemigrate.migrations.recorder import current_heads
    from kubemigrate.postgres.connections import connect_plainly
    from kubemigrate.target.database import database

    table = ledger.Table.of(settings)
    if table is None:
        return Validation("off", 0, [])
    with connect_plainly(database(settings)) as connection:
        if not ledger.exists(connection, table):
            return Validation("absent", 0, [])
        heads = current_heads(connection)
        rows = ledger.read(connection, table)
    found = problems(revisions, heads, rows)
    return Validation("on", len(applied_revisions(revisions, heads)), found)


def require_valid(settings: Settings, revisions: Graph, out: Any) -> None:
    """Stop (a `MigrationError`) when the ledger does not match the files, each problem
    written to `out` first."""
    result = validate(settings, revisions)
    for problem in result.problems:
        print(problem.line(settings), file=out)
    if not result.ok:
        raise MigrationError(
            f"{settings.environment} is protected and {result.summary()} (above); fix them, "
            "or pass --force"
        )


def repair(settings: Settings, revisions: Graph, revision: str, reason: str) -> Problem:
    """Accept `revision`'s file as it is now (or its absence) with a `repair` row naming who
    and why; the problem it clears. A `MigrationError` when there is nothing to repair."""
    from kubemigrate.migrations import provenance
    from kubemigrate.migrations.recorder import current_heads
    from kubemigrate.postgres.locking import migration_lock
    from kubemigrate.target.database import database

    if not reason.strip():
        raise MigrationError('a repair needs a reason: --reason "why the file changed"')
    table = ledger.Table.of(settings)
    if table is None:
        raise MigrationError(f"{OFF}: there is nothing to repair")
    facts = provenance.collect(settings.environment, settings.project_dir)
    with migration_lock(database(settings), settings.lock_wait) as connection:
        heads = current_heads(connection)
        if not ledger.exists(connection, table):
            _create(connection, table, ledger.baseline(revisions, heads, facts) if heads else [])
        found = problems(revisions, heads, ledger.read(connection, table))
        wanted = _named(revisions, revision, [p.revision for p in found])
        problem = next((p for p in found if p.revision == wanted), None)
        if problem is None:
            raise MigrationError(f"nothing to repair: {wanted} matches the ledger")
        at = ledger.now()
        row = ledger.Row.of(
            wanted,
            "repair",
            checksum=problem.now,
            facts=facts,
            started=at,
            finished=at,
            before=heads,
            after=heads,
            reason=reason.strip(),
        )
        ledger.append(connection, table, [row])
    return problem


def _create(connection: Any, table: ledger.Table, rows: list[ledger.Row]) -> None:
    """Create the ledger with `rows`, in one transaction on the lock's autocommit connection."""
    import psycopg2

    from kubemigrate.postgres.connections import driver_message

    connection.autocommit = False
    try:
        with connection:  # psycopg2: one transaction, committed at the end, else rolled back
            ledger.create(connection, table, rows)
    except psycopg2.Error as exc:
        raise ledger.cannot_create(table, driver_message(exc)) from None
    finally:
        with suppress(psycopg2.Error):
            connection.autocommit = True


def _named(graph: Graph, name: str, troubled: list[str]) -> str:
    """The revision `name` names: one with a problem, or one of the files (a prefix too)."""
    if name in troubled:
        return name
    prefixed = [r for r in troubled if r.startswith(name)]
    if len(prefixed) == 1:
        return prefixed[0]
    try:
        return graph.resolve(name)
    except LookupError as exc:
        raise MigrationError(
            f"{exc} in the migrations or the ledger; see `inv db.validate`"
        ) from None


def _ordered(graph: Graph, revisions: set[str]) -> list[str]:
    chain = [r for r in graph.chain(None) if r in revisions]
    return chain + sorted(revisions - set(chain))


def _doc(graph: Graph, revision: str) -> str:
    return graph.docs.get(revision, "")


def _str(path: Any) -> str | None:
    return str(path) if path is not None else None


def _applied(row: dict[str, Any] | None) -> str:
    if row is None:
        return "(no record)"
    when = ledger.utc(row["finished_at"])
    how = " (accepted by db.repair)" if row["action"] == "repair" else ""
    return f"{when} by {row['applied_by']} on {row['environment']}{how}"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _env(environment: str) -> str:
    return "" if environment == "local" else f" --env {environment}"
