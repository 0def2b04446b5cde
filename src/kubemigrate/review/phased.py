"""The plan in an environment with phases: when each revision runs, and what that means for
the code running then.

A pre-deploy revision runs while the old code still serves: one that breaks it (drops or
renames a table or column, adds a NOT NULL column without a default, narrows a type) is an
error that says how out of it. A post-deploy revision runs once only the new code serves: what
breaks the old code is its purpose there, and squawk's rules against it are left out; but one
that adds what the new code may read comes too late, a warning. Revisions behind a pending
post-deploy one wait for the next release, a note.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubemigrate.review.locks import note
from kubemigrate.review.model import Finding, RevisionPlan

if TYPE_CHECKING:
    from kubemigrate.migrations.revisions import Graph

# kubemigrate's rule, and squawk's, for a statement the code still running does not survive.
BREAKS = "breaks-running-code"
PRE_DEPLOY_BREAKS = "pre-deploy-breaks-running-code"
SQUAWK_BREAKS = {"ban-drop-column", "ban-drop-table", "renaming-column", "renaming-table"}


def review(
    revisions: list[RevisionPlan], graph: Graph, heads: tuple[str, ...], *, enabled: bool
) -> None:
    """Adjust each revision's findings to its phase, when the environment has phases."""
    if not enabled:
        return
    from kubemigrate.errors import MigrationError
    from kubemigrate.migrations.phases import split

    try:
        waiting = split(graph, heads).waiting
    except MigrationError:
        waiting = []
    for revision in revisions:
        if revision.phase == "post":
            _post(revision)
        else:
            _pre(revision)
        if revision.revision in waiting:
            revision.findings.append(
                note(
                    "waits-for-next-release",
                    "follows a pending post-deploy revision: it runs in the next release",
                )
            )


def _pre(revision: RevisionPlan) -> None:
    for index, finding in enumerate(revision.findings):
        if finding.rule == BREAKS:
            cause = finding.message.split(": the pods", 1)[0]
            revision.findings[index] = Finding(
                PRE_DEPLOY_BREAKS,
                "error",
                finding.statement,
                finding.lock,
                finding.rewrite,
                finding.table,
                f"{cause}: it runs before the rollout, while the old code still serves; mark "
                'it `phase = "post"`, or split it (expand before the rollout, contract after)',
                finding.measured,
            )


def _post(revision: RevisionPlan) -> None:
    revision.findings = [
        f
        for f in revision.findings
        if f.rule != BREAKS and not (f.by_squawk and f.rule in SQUAWK_BREAKS)
    ]
    if revision.adds:
        revision.findings.append(
            note(
                "post-deploy-adds",
                f"adds {', '.join(revision.adds)}, which the new code may read, but runs only "
                "after the rollout: if the new code reads it, make it pre-deploy (remove `phase "
                '= "post"`) or split it',
            )
        )


def refused(revisions: list[RevisionPlan]) -> list[tuple[str, Finding]]:
    """The findings a protected environment's gate refuses besides squawk's: pre-deploy
    revisions that break the running code."""
    return [
        (revision.revision, finding)
        for revision in revisions
        for finding in revision.findings
        if finding.rule == PRE_DEPLOY_BREAKS
    ]
