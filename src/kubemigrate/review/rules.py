"""What a statement does to the tables it touches, read on PostgreSQL's own parse tree (pglast,
the libpg_query binding): the lock it takes, whether it rewrites or scans the table under that
lock, and whether the code still running during a rolling deploy survives it.

`classify(statement, schema, server_major)` reads one statement; an `ALTER TABLE` with several
subcommands is read one subcommand at a time, and the statement takes the strongest lock of
them. What the parser cannot read is said as such (`Classified.error`), never guessed.

Each rule is a row of `RULES`, with the part of PostgreSQL's documentation that states it; the
README shows the same table. A rule that changed with a server version says from which major
it holds, and `server_major` chooses (0, an unknown server: the oldest supported, 13).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pglast.enums.parsenodes import ConstrType

from kubemigrate.review.alter import subcommand
from kubemigrate.review.model import ACCESS_EXCLUSIVE, Classified, Effect
from kubemigrate.review.schema import Schema, TypeName

OLDEST_SUPPORTED = 13


@dataclass(frozen=True)
class Rule:
    name: str
    lock: str
    effect: str  # what it does beyond the lock
    source: str  # where PostgreSQL's documentation says so


RULES = {
    rule.name: rule
    for rule in (
        Rule("create-index", "SHARE", "builds the index; blocks writes", "CREATE INDEX"),
        Rule(
            "create-index-concurrently",
            "SHARE UPDATE EXCLUSIVE",
            "builds the index without blocking writes",
            "CREATE INDEX, Building Indexes Concurrently",
        ),
        Rule("drop-index", ACCESS_EXCLUSIVE, "", "DROP INDEX"),
        Rule("drop-index-concurrently", "SHARE UPDATE EXCLUSIVE", "", "DROP INDEX"),
        Rule("drop-table", ACCESS_EXCLUSIVE, "breaks running code", "DROP TABLE"),
        Rule("rename-table", ACCESS_EXCLUSIVE, "breaks running code", "ALTER TABLE, RENAME"),
        Rule("rename-column", ACCESS_EXCLUSIVE, "breaks running code", "ALTER TABLE, RENAME"),
        Rule("drop-column", ACCESS_EXCLUSIVE, "breaks running code", "ALTER TABLE, DROP COLUMN"),
        Rule(
            "add-column",
            ACCESS_EXCLUSIVE,
            "no rewrite without a default, or with a non-volatile one from 11; a volatile "
            "default rewrites; NOT NULL without a default breaks running code",
            "ALTER TABLE, Notes (ADD COLUMN with a DEFAULT)",
        ),
        Rule(
            "alter-column-type",
            ACCESS_EXCLUSIVE,
            "rewrites unless binary coercible (varchar to a longer varchar or to text, numeric "
            "to a larger precision); breaks running code unless it only widens",
            "ALTER TABLE, Notes (SET DATA TYPE)",
        ),
        Rule(
            "set-not-null",
            ACCESS_EXCLUSIVE,
            "scans the table, unless a valid CHECK (col IS NOT NULL) proves it (from 12)",
            "ALTER TABLE, SET/DROP NOT NULL",
        ),
        Rule(
            "add-check",
            ACCESS_EXCLUSIVE,
            "scans the table, unless NOT VALID",
            "ALTER TABLE, ADD table_constraint [ NOT VALID ]",
        ),
        Rule(
            "add-foreign-key",
            "SHARE ROW EXCLUSIVE",
            "on both tables; scans, unless NOT VALID",
            "ALTER TABLE, Notes (ADD FOREIGN KEY)",
        ),
        Rule(
            "add-unique",
            ACCESS_EXCLUSIVE,
            "builds its index under the lock, unless USING INDEX",
            "ALTER TABLE, ADD table_constraint_using_index",
        ),
        Rule(
            "validate-constraint",
            "SHARE UPDATE EXCLUSIVE",
            "scans the table without blocking writes",
            "ALTER TABLE, VALIDATE CONSTRAINT",
        ),
        Rule(
            "set-statistics",
            "SHARE UPDATE EXCLUSIVE",
            "",
            "ALTER TABLE, SET STATISTICS and SET ( storage_parameter )",
        ),
        Rule("alter-table", ACCESS_EXCLUSIVE, "", "ALTER TABLE (the default lock)"),
        Rule(
            "attach-partition",
            "SHARE UPDATE EXCLUSIVE",
            "on the parent from 12 (ACCESS EXCLUSIVE before); the partition's rows are scanned "
            "under ACCESS EXCLUSIVE",
            "ALTER TABLE, ATTACH PARTITION",
        ),
        Rule(
            "detach-partition",
            ACCESS_EXCLUSIVE,
            "on the parent and the partition; SHARE UPDATE EXCLUSIVE with CONCURRENTLY (from 14)",
            "ALTER TABLE, DETACH PARTITION",
        ),
        Rule("reindex", "SHARE", "rebuilds the indexes; blocks writes", "REINDEX"),
        Rule(
            "reindex-concurrently",
            "SHARE UPDATE EXCLUSIVE",
            "rebuilds the indexes without blocking writes (from 12)",
            "REINDEX, Rebuilding Indexes Concurrently",
        ),
        Rule("data", "ROW EXCLUSIVE", "changes rows", "Explicit Locking, ROW EXCLUSIVE"),
        Rule("truncate", ACCESS_EXCLUSIVE, "replaces the table's files", "TRUNCATE"),
        Rule("vacuum-full", ACCESS_EXCLUSIVE, "rewrites the table", "VACUUM, FULL"),
        Rule("cluster", ACCESS_EXCLUSIVE, "rewrites the table", "CLUSTER"),
    )
}


def classify(statement: str, schema: Schema, server_major: int = 0) -> Classified:
    """What `statement` does, given what `schema` knows of the tables before it; `schema`
    learns what the statement changes (a column's type, a proven NOT NULL)."""
    from pglast import parse_sql
    from pglast.parser import ParseError

    major = server_major or OLDEST_SUPPORTED
    try:
        (parsed,) = parse_sql(statement)
    except (ParseError, ValueError) as exc:
        return Classified(statement, error=f"PostgreSQL's parser cannot read it ({exc})")
    node = parsed.stmt
    kind = type(node).__name__
    reader = READERS.get(kind)
    result = Classified(statement)
    if reader is not None:
        reader(node, result, schema, major)
    return result


def _table(range_var: Any) -> str | None:
    name = getattr(range_var, "relname", None)
    return str(name) if name else None


def _index(node: Any, result: Classified, schema: Schema, major: int) -> None:
    rule = "create-index-concurrently" if getattr(node, "concurrent", False) else "create-index"
    result.effects.append(Effect(rule, _table(node.relation), RULES[rule].lock))


def _drop(node: Any, result: Classified, schema: Schema, major: int) -> None:
    from pglast.enums.parsenodes import ObjectType

    kind = node.removeType
    names = [".".join(str(p.sval) for p in name) for name in node.objects or ()]
    if kind == ObjectType.OBJECT_TABLE:
        for name in names:
            table = name.split(".")[-1]
            result.effects.append(
                Effect("drop-table", table, ACCESS_EXCLUSIVE, breaks="drops a table")
            )
    elif kind == ObjectType.OBJECT_INDEX:
        rule = "drop-index-concurrently" if node.concurrent else "drop-index"
        result.effects.append(Effect(rule, None, RULES[rule].lock))


def _rename(node: Any, result: Classified, schema: Schema, major: int) -> None:
    from pglast.enums.parsenodes import ObjectType

    kind, table = node.renameType, _table(node.relation)
    if kind == ObjectType.OBJECT_TABLE:
        result.effects.append(
            Effect("rename-table", table, ACCESS_EXCLUSIVE, breaks="renames a table")
        )
    elif kind == ObjectType.OBJECT_COLUMN:
        result.effects.append(
            Effect("rename-column", table, ACCESS_EXCLUSIVE, breaks="renames a column")
        )


def _create_table(node: Any, result: Classified, schema: Schema, major: int) -> None:
    """A new table takes no lock that matters on itself; a foreign key of it takes SHARE ROW
    EXCLUSIVE on the table it references (ALTER TABLE, Notes (ADD FOREIGN KEY))."""
    table = _table(node.relation)
    result.creates = table
    constraints = []
    for element in node.tableElts or ():
        if type(element).__name__ == "ColumnDef":
            if table:
                schema.learn_type(table, str(element.colname), TypeName.of(element.typeName))
            constraints += list(element.constraints or ())
        elif type(element).__name__ == "Constraint":
            constraints.append(element)
    referenced = {
        _table(c.pktable) for c in constraints if c.contype == ConstrType.CONSTR_FOREIGN
    } - {table, None}
    for other in sorted(name for name in referenced if name):
        result.effects.append(Effect("add-foreign-key", other, "SHARE ROW EXCLUSIVE"))


def _reindex(node: Any, result: Classified, schema: Schema, major: int) -> None:
    from pglast.enums.parsenodes import ReindexObjectType

    concurrently = any(p.defname == "concurrently" for p in node.params or ())
    rule = "reindex-concurrently" if concurrently else "reindex"
    table = _table(node.relation) if node.kind == ReindexObjectType.REINDEX_OBJECT_TABLE else None
    result.effects.append(Effect(rule, table, RULES[rule].lock))


def _data(node: Any, result: Classified, schema: Schema, major: int) -> None:
    result.effects.append(Effect("data", _table(node.relation), "ROW EXCLUSIVE"))


def _truncate(node: Any, result: Classified, schema: Schema, major: int) -> None:
    for relation in node.relations or ():
        result.effects.append(Effect("truncate", _table(relation), ACCESS_EXCLUSIVE, rewrite=True))


def _vacuum(node: Any, result: Classified, schema: Schema, major: int) -> None:
    full = any(o.defname == "full" for o in node.options or ())
    if full:
        for relation in node.rels or ():
            table = _table(relation.relation)
            result.effects.append(Effect("vacuum-full", table, ACCESS_EXCLUSIVE, rewrite=True))


def _cluster(node: Any, result: Classified, schema: Schema, major: int) -> None:
    table = _table(node.relation)
    if table:
        result.effects.append(Effect("cluster", table, ACCESS_EXCLUSIVE, rewrite=True))


def _alter_table(node: Any, result: Classified, schema: Schema, major: int) -> None:
    table = _table(node.relation)
    for command in node.cmds or ():
        result.effects += subcommand(command, table, schema, major)


READERS = {
    "IndexStmt": _index,
    "DropStmt": _drop,
    "RenameStmt": _rename,
    "CreateStmt": _create_table,
    "UpdateStmt": _data,
    "DeleteStmt": _data,
    "InsertStmt": _data,
    "MergeStmt": _data,
    "TruncateStmt": _truncate,
    "VacuumStmt": _vacuum,
    "ClusterStmt": _cluster,
    "ReindexStmt": _reindex,
    "AlterTableStmt": _alter_table,
}
