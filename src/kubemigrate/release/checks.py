"""Post-release checks of a database: each check says ok, FAIL or skip, with a detail.

1. reachable: a connection and `SELECT 1` (server version and latency);
2. single head: the migrations have one head;
3. at head: the database's revision is that head;
4. models match: autogenerate finds nothing between the models and the live schema;
5. ledger: each applied revision's file is as the ledger recorded it (`inv db.validate`);
6. pod ready (k8s target): a Ready database pod.

Every check runs even when an earlier one failed; a check that cannot be judged because of an
earlier failure says skip.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from kubemigrate.errors import KubemigrateError
from kubemigrate.settings.declared import Settings

if TYPE_CHECKING:
    from kubemigrate.migrations.revisions import Graph

OK, FAIL, SKIP = "ok", "FAIL", "skip"


@dataclass(frozen=True)
class Check:
    name: str
    result: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def verify(settings: Settings) -> list[Check]:
    """Run every check against the configured database."""
    from kubemigrate.migrations.commands import graph
    from kubemigrate.migrations.recorder import to_head

    checks: list[Check] = []
    if settings.target == "k8s":
        checks.append(_pod_ready(settings))
    reachable, heads_in_db = _reachable(settings)
    checks.append(reachable)

    revisions = graph(settings)
    script_heads = tuple(revisions.heads())
    single = len(script_heads) == 1
    checks.append(
        Check(
            "single head",
            OK if single else FAIL,
            ", ".join(script_heads)
            if single
            else f"{len(script_heads)} heads: {', '.join(script_heads)}; run `inv db.merge`",
        )
    )

    if heads_in_db is None:
        for name in ("at head", "models match", "ledger"):
            checks.append(Check(name, SKIP, "database not reachable"))
        return checks
    at_head = set(heads_in_db) == set(script_heads)
    shown = ", ".join(heads_in_db) or "base (empty)"
    between = not at_head and _between_phases(settings, revisions, heads_in_db)
    if between:
        checks.append(Check("at head", OK, f"{shown}: {between}"))
    else:
        checks.append(
            Check(
                "at head",
                OK if at_head else FAIL,
                shown if at_head else f"database at {shown}; {to_head(revisions)}",
            )
        )
    if between:
        checks.append(Check("models match", SKIP, "post-deploy revisions pending"))
    elif not at_head:
        checks.append(Check("models match", SKIP, "database not at head"))
    else:
        checks.append(_models_match(settings))
    checks.append(_ledger(settings, revisions))
    return checks


def passed(checks: list[Check]) -> bool:
    return all(check.result != FAIL for check in checks)


def require_passed(checks: list[Check]) -> None:
    if not passed(checks):
        failed = ", ".join(c.name for c in checks if c.result == FAIL)
        raise KubemigrateError(f"verification failed: {failed}")


def _reachable(settings: Settings) -> tuple[Check, tuple[str, ...] | None]:
    from kubemigrate.migrations.recorder import current_heads
    from kubemigrate.postgres.connections import connect
    from kubemigrate.target.database import database

    try:
        db = database(settings)
        with connect(db) as connection:
            started = time.perf_counter()
            connection.exec_driver_sql("SELECT 1")
            latency = (time.perf_counter() - started) * 1000
            version = connection.exec_driver_sql("SHOW server_version").scalar()
            heads = current_heads(connection)
    except KubemigrateError as exc:
        return Check("reachable", FAIL, exc.message), None
    return Check("reachable", OK, f"PostgreSQL {version}, {latency:.1f} ms"), heads


def _models_match(settings: Settings) -> Check:
    from kubemigrate.migrations.commands import check

    try:
        check(settings)
    except KubemigrateError as exc:
        return Check("models match", FAIL, exc.message)
    return Check("models match", OK, "no pending model changes")


def _between_phases(settings: Settings, revisions: Graph, heads: tuple[str, ...]) -> str:
    """With phases, where the database is when the pre-deploy revisions are applied and
    post-deploy ones are pending (accepted between the phases of a release); else empty."""
    from kubemigrate.migrations import phases

    if not phases.enabled(settings):
        return ""
    try:
        found = phases.split(revisions, heads)
    except KubemigrateError:
        return ""
    if found.pre or not found.post:
        return ""
    return f"the pre-deploy target; post-deploy pending: {', '.join(found.post)}"


def _ledger(settings: Settings, revisions: Graph) -> Check:
    from kubemigrate.migrations.ledger_check import validate

    try:
        result = validate(settings, revisions)
    except KubemigrateError as exc:
        return Check("ledger", FAIL, exc.message)
    if result.state != "on":
        return Check("ledger", SKIP, result.summary())
    if result.ok:
        return Check("ledger", OK, f"{result.checked} applied revision(s) as applied")
    kinds = ", ".join(f"{p.kind} {p.revision}" for p in result.problems)
    return Check("ledger", FAIL, f"{kinds}; `inv db.validate` says what to do")


def _pod_ready(settings: Settings) -> Check:
    from kubemigrate.kubernetes.kubectl import Kubectl
    from kubemigrate.kubernetes.reach import database_pod

    try:
        kubectl = Kubectl.from_settings(settings)
        pod = database_pod(settings, kubectl)
    except KubemigrateError as exc:
        return Check("pod ready", FAIL, exc.message)
    return Check("pod ready", OK, f"{pod} in {kubectl.where}")


def table(checks: list[Check]) -> str:
    """The checks as an aligned text table."""
    rows = [("CHECK", "RESULT", "DETAIL")] + [(c.name, c.result, c.detail) for c in checks]
    width = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(f"{a:<{width[0]}}  {b:<{width[1]}}  {c}" for a, b, c in rows)
