"""The plan shown: as text for a terminal, as Markdown for a pull-request comment (within
GitHub's limit), as versioned JSON for pipelines."""

from __future__ import annotations

import json

from kubemigrate import units
from kubemigrate.review.model import Finding, Plan, RevisionPlan

COMMENT_LIMIT = 65536  # GitHub's pull-request comment


def size(revision: RevisionPlan, table: str | None) -> str:
    for known in revision.tables:
        if known["name"] == table:
            return f" ({_rows(known['rows'])} rows, {units.size(known['bytes'])})"
    return ""


def _rows(count: int) -> str:
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return str(count)


def describe(revision: RevisionPlan, finding: Finding) -> str:
    """One line: rule, lock on the table (its size), rewrite, message."""
    where = ""
    if finding.lock and finding.table:
        how = " (measured)" if finding.measured else ""
        where = f": {finding.lock}{how} on {finding.table}{size(revision, finding.table)}"
    rewrite = ", rewrites the table" if finding.rewrite else ""
    held = ""
    if finding.held and finding.table:
        held = f" (the revision already holds {finding.held} on {finding.table} when it runs)"
    return f"{finding.severity}: {finding.rule}{where}{rewrite}: {finding.message}{held}"


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
        lines.append(f"\n{revision.revision}  {revision.message}  ({revision.phase}-deploy)")
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
        "| revision | message | phase | errors | warnings | downgrade |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for revision in result.revisions:
        errors = sum(f.severity == "error" for f in revision.findings)
        warnings = sum(f.severity == "warning" for f in revision.findings)
        down = revision.downgrade
        undo = "none" if not down["present"] else "loses data" if down["loses_data"] else "yes"
        summary.append(
            f"| `{revision.revision}` | {revision.message} | {revision.phase}-deploy | {errors} "
            f"| {warnings} | {undo} |"
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


def lint_line(revision: str, finding: Finding) -> str:
    """One of squawk's findings as `inv db.lint` and the release's gate list it."""
    return f"{revision}: {finding.rule}: {finding.message}"
