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
(`kubemigrate.migrations.branches`); with `--rehearse`, they run on a throwaway copy and the
locks and rewrites seen there replace the inferred ones (`kubemigrate.review.rehearsal`); each
finding says which it holds. The findings' model is `review.model`, the inferred locks
`review.locks`, squawk's findings `review.squawk`, and the report `review.render`.

The JSON shape (`--format json`) is versioned by its `version` field (1; new keys may be added
within a version, none is removed or changes meaning):

    {"version": 1, "environment": ..., "database": ..., "from": REV|null, "base": GITREF|null,
     "heads": [...], "check": str,
     "rehearsal": null | {"server", "schema", "failed": null | "REV: error"},
     "revisions": [{"revision", "message", "sql", "online_only",
       "findings": [{"rule", "severity", "statement", "lock", "rewrite", "table", "message",
                     "measured", "source": "squawk" | "kubemigrate"}],
       "tables": [{"name", "rows", "bytes"}], "downgrade": {"present", "loses_data"},
       "rehearsed": null | [{"statement", "locks": {TABLE: LOCK}, "rewrites": [TABLE],
                             "measured"}],
       "phase": "pre" | "post", "adds": [TABLE | TABLE.COLUMN]}]}
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubemigrate.errors import KubemigrateError, MigrationError
from kubemigrate.review import phased, schema, squawk
from kubemigrate.review.locks import added, classified, inferred, note, own_statements
from kubemigrate.review.model import Plan, RevisionPlan
from kubemigrate.review.schema import Schema

if TYPE_CHECKING:
    from collections.abc import Callable

    from kubemigrate.migrations.revisions import Graph
    from kubemigrate.settings.declared import Settings

    # The rehearsal's `measure`: (settings, revisions, start, recorded, server major) -> summary.
    Rehearse = Callable[
        [Settings, list[RevisionPlan], str | None, tuple[str, ...] | None, int], dict[str, Any]
    ]


def plan(
    settings: Settings,
    *,
    since: str | None = None,
    base: str | None = None,
    rehearse: Rehearse | None = None,
) -> Plan:
    """The plan of the revisions after `since` (default: the database's revision) to head; with
    `base` (a git ref), of the revisions the working tree adds to that ref's. `rehearse` (the
    rehearsal's `measure`, which the caller passes for `--rehearse`) runs them on a throwaway
    copy and measures their locks and rewrites."""
    from kubemigrate.migrations import branches, phases
    from kubemigrate.migrations.commands import check_verdict, graph
    from kubemigrate.migrations.config import layout

    if since is not None and base is not None:
        raise MigrationError("--since and --base both say where the plan starts: pass one")
    revisions_graph = graph(settings)
    heads = revisions_graph.heads()
    known, shown, server_major, schema = _database(settings)
    if base is not None:
        versions = layout(settings).versions
        start = branches.added(settings, revisions_graph, versions, base).base_head
    else:
        start = since if since is not None else _single(known)
    chain = _chain(revisions_graph, start)
    revisions = _revisions(settings, revisions_graph, chain, server_major, schema)
    rehearsed = None
    if rehearse is not None and chain:
        rehearsed = rehearse(settings, revisions, start, known, server_major)
    if known is not None:
        _sizes(settings, revisions)
    phased.review(revisions, revisions_graph, known or (), enabled=phases.enabled(settings))
    check = "pending revisions: run it after the upgrade" if chain else "database not reachable"
    if known is not None and not chain:
        check = check_verdict(settings)
    if rehearsed is not None and rehearsed["check"] is not None:
        check = f"{rehearsed['check']} (on the rehearsal's copy, after the pending revisions)"
    return Plan(settings.environment, shown, start, heads, check, revisions, base, rehearsed)


def _database(settings: Settings) -> tuple[tuple[str, ...] | None, str, int, Schema]:
    """The database's revisions (None: not reachable), its URL shown, its major version, and
    what it knows of its tables' columns (read-only)."""
    from kubemigrate.migrations.recorder import current_heads
    from kubemigrate.postgres.connections import connect_plainly
    from kubemigrate.target.database import database

    try:
        db = database(settings)
        with connect_plainly(db) as connection:
            heads, major = current_heads(connection), int(connection.server_version) // 10000
            return heads, db.shown, major, schema.read(connection)
    except KubemigrateError as exc:
        return None, f"not reachable ({exc})", 0, Schema()


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
    settings: Settings, graph: Graph, chain: list[str], server_major: int, known: Schema
) -> list[RevisionPlan]:
    """The plan of each revision of `chain`, its SQL rendered alone (all in one go, where
    env.py runs); each revision's statements read knowing what the ones before changed."""
    from kubemigrate.migrations.commands import offline_sql

    spans = [f"{graph.parents[r][0]}:{r}" if graph.parents[r] else r for r in chain]
    rendered = offline_sql(settings, spans)
    return [
        _revision(graph, revision, sql, server_major, settings, known)
        for revision, sql in zip(chain, rendered, strict=True)
    ]


def _revision(
    graph: Graph,
    revision: str,
    sql: str | None,
    server_major: int,
    settings: Settings,
    known: Schema,
) -> RevisionPlan:
    doc = graph.docs.get(revision, "")
    result = RevisionPlan(
        revision=revision,
        message=doc.strip().splitlines()[0] if doc.strip() else "",
        sql=sql or "",
        online_only=sql is None,
        downgrade=_downgrade(graph.paths[revision]),
        phase=graph.phase(revision),
    )
    if sql is None:
        result.findings.append(
            note(
                "online-only", "cannot be rendered offline (it reads the database); review its code"
            )
        )
        return result
    statements = classified(own_statements(sql), known, server_major)
    result.adds = added(statements)
    result.findings += inferred(statements)
    result.findings += squawk.findings(settings, statements, server_major)
    if not result.downgrade["present"]:
        result.findings.append(note("no-downgrade", "downgrade() does nothing"))
    elif result.downgrade["loses_data"]:
        result.findings.append(
            note("downgrade-loses-data", "downgrade() drops a table or column: its data is lost")
        )
    return result


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
    from kubemigrate.postgres.connections import connect_plainly
    from kubemigrate.target.database import database

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
