"""The ledger as people and pipelines read it: `inv db.history --applied` (a table, newest
first, or JSON) and the line `inv db.current --verbose` adds under the current head.

Each row's RESULT says how its revision's file compares with the content that row recorded:
`ok` (the same), `edited`, `missing`; a downgrade or a stamp to base recorded no content (`-`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from kubemigrate.errors import MigrationError
from kubemigrate.migrations import ledger
from kubemigrate.migrations.ledger_check import OFF

if TYPE_CHECKING:
    from kubemigrate.migrations.revisions import Graph
    from kubemigrate.settings.declared import Settings

HEADERS = ("APPLIED", "ACTION", "REVISION", "WHO", "DURATION", "RESULT")


def rows(settings: Settings, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The ledger's rows, newest first; a `MigrationError` when it is off."""
    from kubemigrate.postgres.connections import connect_plainly
    from kubemigrate.target.database import database

    table = ledger.Table.of(settings)
    if table is None:
        raise MigrationError(f"{OFF}: there is no applied history to show; set it to true")
    with connect_plainly(database(settings)) as connection:
        return ledger.read(connection, table, limit=limit)


def result(row: dict[str, Any], graph: Graph) -> str:
    """How the row's revision's file compares with what the row recorded."""
    if row["action"] == "downgrade" or row["revision"] == "base":
        return "-"
    path = graph.paths.get(row["revision"])
    now = ledger.checksum(path) if path is not None else None
    if now is None:
        return "ok" if row["checksum"] is None else "missing"
    return "ok" if now == row["checksum"] else "edited"


def duration(milliseconds: int) -> str:
    """'17 ms', '2.4 s', '3m 12s'."""
    from kubemigrate.units import age

    if milliseconds < 1000:
        return f"{milliseconds} ms"
    if milliseconds < 60000:
        return f"{milliseconds / 1000:.1f} s"
    return age(milliseconds / 1000)


def as_table(found: list[dict[str, Any]], graph: Graph) -> str:
    """The rows as an aligned table (a line saying so when there are none)."""
    if not found:
        return "The ledger has no rows yet: `inv db.upgrade` writes them."
    table = [HEADERS] + [
        (
            ledger.utc(row["finished_at"]),
            row["action"],
            row["revision"],
            row["applied_by"],
            duration(row["duration_ms"]),
            result(row, graph),
        )
        for row in found
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False))
        + "  "
        + line[-1]
        for line in table
    )


def as_json(found: list[dict[str, Any]], graph: Graph) -> str:
    """The rows as JSON (a versioned shape): every column, times in ISO 8601."""
    shown = [
        {
            **{k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()},
            "heads_before": _heads(row["heads_before"]),
            "heads_after": _heads(row["heads_after"]),
            "result": result(row, graph),
        }
        for row in found
    ]
    return json.dumps({"version": 1, "rows": shown}, indent=2)


def current_lines(settings: Settings) -> list[str]:
    """When and by whom each of the database's current revisions was applied."""
    from kubemigrate.migrations.recorder import current_heads
    from kubemigrate.postgres.connections import connect_plainly
    from kubemigrate.target.database import database

    table = ledger.Table.of(settings)
    if table is None:
        return [f"Applied: unknown, {OFF}"]
    with connect_plainly(database(settings)) as connection:
        heads = current_heads(connection)
        found = ledger.read(connection, table)
    return [applied_line(found, head) for head in heads]


def applied_line(found: list[dict[str, Any]], revision: str) -> str:
    """When, by whom and how `revision` was last applied, from the ledger's rows."""
    row = next(
        (r for r in found if r["revision"] == revision and r["action"] in ledger.ACCEPTING),
        None,
    )
    if row is None:
        return f"Applied {revision}: not in the ledger (`inv db.validate` says more)"
    commit = f", commit {row['git_commit'][:12]}" if row["git_commit"] else ""
    return (
        f"Applied {revision}: {ledger.utc(row['finished_at'])} by {row['applied_by']} on "
        f"{row['environment']} ({row['action']}, {duration(row['duration_ms'])}{commit})"
    )


def _heads(text: str) -> list[str]:
    return [head for head in text.split(",") if head]
