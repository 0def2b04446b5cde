"""The rehearsal's measures taken into the plan (`inv db.plan --rehearse`): each finding whose
statement ran on the copy takes the lock it measured there, and the lock the revision already
held; a rewrite or blocking lock that no rule inferred becomes a finding of its own."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from kubemigrate.postgres.statements import split
from kubemigrate.review.locks import lock_finding, note, own_statements
from kubemigrate.review.model import BLOCKING, RevisionPlan
from kubemigrate.review.rehearsal import Revision, Statement, rehearse

if TYPE_CHECKING:
    from kubemigrate.settings.declared import Settings


def measure(
    settings: Settings,
    revisions: list[RevisionPlan],
    start: str | None,
    known: tuple[str, ...] | None,
    server_major: int,
) -> dict[str, Any]:
    """Run the plan's revisions on a throwaway copy (`rehearse`); each finding whose
    statement ran there takes the lock and rewrite measured, and a measured rewrite or blocking
    lock no rule inferred becomes a finding of its own."""
    done = rehearse(
        settings,
        [Revision(r.revision, None if r.online_only else split(r.sql)) for r in revisions],
        start=start,
        recorded=known,
        server_major=server_major,
    )
    for revision in revisions:
        statements = done.revisions.get(revision.revision)
        if statements is None or revision.online_only:  # not reached, or applied unmeasured
            continue
        mine = set(own_statements(revision.sql))
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
                    note("rehearsal-failed", f"failed on a copy of the schema: {error}", "error")
                )
    return {"server": done.server, "schema": done.schema, "failed": failed, "check": done.check}


def _take_measures(revision: RevisionPlan, measured: Statement) -> None:
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
        if finding.table in measured.held:
            finding.held = measured.held[finding.table]
    if own:
        return
    for table, level in measured.locks.items():
        rewrites = table in measured.rewrites
        if rewrites or level in BLOCKING:
            revision.findings.append(
                lock_finding(measured.statement, level, rewrites, table, measured=True)
            )
