"""What the plan holds: each pending revision's findings (a rule, its severity, the statement,
the lock it takes and whether it rewrites the table), its tables and its downgrade; one
`Finding` type for every source, squawk's rules and kubemigrate's own."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

VERSION = 1


SEVERITIES = ("warning", "error")


# The lock levels that stop the application's queries, and what they stop.
BLOCKING = {
    "SHARE": "writes",
    "SHARE ROW EXCLUSIVE": "writes",
    "EXCLUSIVE": "reads with FOR UPDATE and writes",
    "ACCESS EXCLUSIVE": "reads and writes",
}


@dataclass(frozen=True)
class Lock:
    """What one statement does to a table, by PostgreSQL's documented lock levels."""

    level: str
    rewrite: bool = False
    breaks: str | None = None  # why the code still running would fail


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
    source: str = "kubemigrate"  # or "squawk": whose rule it is
    held: str | None = None  # the rehearsal: the lock the revision held already when it ran

    @property
    def by_squawk(self) -> bool:
        """Whether squawk found it (the release's gate and `inv db.lint` refuse those)."""
        return self.source == "squawk"


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
    phase: str = "pre"  # when it runs in a release: "pre" (before the rollout) or "post"
    adds: list[str] = field(default_factory=list)  # the tables and columns it adds


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


# Lock modes, weakest first (PostgreSQL's table-level lock modes).
MODES = (
    "ACCESS SHARE",
    "ROW SHARE",
    "ROW EXCLUSIVE",
    "SHARE UPDATE EXCLUSIVE",
    "SHARE",
    "SHARE ROW EXCLUSIVE",
    "EXCLUSIVE",
    "ACCESS EXCLUSIVE",
)
ACCESS_EXCLUSIVE = MODES[-1]  # the lock ALTER TABLE takes unless its documentation says less


@dataclass
class Effect:
    """What one statement (or one ALTER TABLE subcommand) does to one table, by the rule named
    (`kubemigrate.review.rules.RULES`)."""

    rule: str
    table: str | None
    lock: str
    rewrite: bool = False
    scan: bool = False  # reads the whole table while holding the lock
    breaks: str | None = None  # why the code still running fails


@dataclass
class Classified:
    """One statement: what it does to each table; or why PostgreSQL's parser cannot read it."""

    statement: str
    effects: list[Effect] = field(default_factory=list)
    error: str | None = None
    creates: str | None = None  # the table it creates (no lock on it matters)

    def strongest(self) -> Effect | None:
        """The effect with the strongest lock (the statement's lock)."""
        return max(self.effects, key=lambda e: MODES.index(e.lock), default=None)
