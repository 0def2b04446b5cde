"""`ALTER TABLE`, one subcommand at a time: the lock each takes, and whether it rewrites or
scans the table or breaks the code still running (the rules' names are `rules.RULES`')."""

from __future__ import annotations

from typing import Any

from pglast.enums.parsenodes import AlterTableType, ConstrType

from kubemigrate.review.model import ACCESS_EXCLUSIVE, Effect
from kubemigrate.review.schema import Schema, TypeName, widens

NO_REWRITE_FOR_NON_VOLATILE_DEFAULT = 11  # PostgreSQL 11's release notes
NOT_NULL_PROVEN_BY_CHECK = 12  # PostgreSQL 12's release notes
ATTACH_WITHOUT_BLOCKING = 12  # ATTACH PARTITION takes SHARE UPDATE EXCLUSIVE on the parent
DETACH_CONCURRENTLY = 14
# Functions a default may call that are not volatile (pg_proc.provolatile); any other one is
# taken for volatile, the careful guess. SQL's CURRENT_TIMESTAMP and the like are stable.
NON_VOLATILE = {
    "now",
    "transaction_timestamp",
    "statement_timestamp",
    "lower",
    "upper",
    "length",
    "coalesce",
    "jsonb_build_object",
    "json_build_object",
    "to_jsonb",
}
LIGHT = {  # subcommands that take SHARE UPDATE EXCLUSIVE (ALTER TABLE's own list)
    AlterTableType.AT_SetStatistics,
    AlterTableType.AT_SetRelOptions,
    AlterTableType.AT_ResetRelOptions,
    AlterTableType.AT_ClusterOn,
    AlterTableType.AT_DropCluster,
}
REWRITES = {  # subcommands that always write the table anew
    AlterTableType.AT_SetLogged,
    AlterTableType.AT_SetUnLogged,
    AlterTableType.AT_SetAccessMethod,
}


def subcommand(command: Any, table: str | None, schema: Schema, major: int) -> list[Effect]:
    """The effects of one `ALTER TABLE` subcommand on `table` (and on a referenced one)."""
    kind = command.subtype
    if kind == AlterTableType.AT_AddColumn:
        return [_add_column(command.def_, table, schema, major)]
    if kind == AlterTableType.AT_DropColumn:
        return [Effect("drop-column", table, ACCESS_EXCLUSIVE, breaks="drops a column")]
    if kind == AlterTableType.AT_AlterColumnType:
        return [_alter_type(command, table, schema)]
    if kind == AlterTableType.AT_SetNotNull:
        return [_set_not_null(str(command.name), table, schema, major)]
    if kind == AlterTableType.AT_AddConstraint:
        return _add_constraint(command.def_, table, schema)
    if kind == AlterTableType.AT_ValidateConstraint:
        schema.validate(str(command.name))
        return [Effect("validate-constraint", table, "SHARE UPDATE EXCLUSIVE", scan=True)]
    if kind == AlterTableType.AT_AttachPartition:
        return _attach(command.def_, table, major)
    if kind == AlterTableType.AT_DetachPartition:
        return _detach(command.def_, table, major)
    if kind in LIGHT:
        return [Effect("set-statistics", table, "SHARE UPDATE EXCLUSIVE")]
    return [Effect("alter-table", table, ACCESS_EXCLUSIVE, rewrite=kind in REWRITES)]


def _add_column(column: Any, table: str | None, schema: Schema, major: int) -> Effect:
    """A column added: a rewrite with a volatile default (or a non-volatile one before 11, or
    a stored generated or identity column); NOT NULL without a default breaks running code."""
    type_name = TypeName.of(column.typeName)
    if table:
        schema.learn_type(table, str(column.colname), type_name)
    constraints = list(column.constraints or ())
    kinds = {c.contype for c in constraints}
    default = next(
        (c.raw_expr for c in constraints if c.contype == ConstrType.CONSTR_DEFAULT), None
    )
    serial = str(column.typeName.names[-1].sval) in ("serial", "bigserial", "smallserial")
    filled = kinds & {ConstrType.CONSTR_IDENTITY, ConstrType.CONSTR_GENERATED} or serial
    not_null = ConstrType.CONSTR_NOTNULL in kinds or ConstrType.CONSTR_PRIMARY in kinds
    if default is not None:
        volatile = not _non_volatile(default)
        rewrite = volatile or major < NO_REWRITE_FOR_NON_VOLATILE_DEFAULT
    else:
        rewrite = bool(filled)
    breaks = None
    if not_null and default is None and not filled:
        breaks = "adds a NOT NULL column without a default"
    return Effect("add-column", table, ACCESS_EXCLUSIVE, rewrite=rewrite, breaks=breaks)


def _non_volatile(expression: Any) -> bool:
    """Whether a default's expression is a constant or calls only non-volatile functions."""
    kind = type(expression).__name__
    if kind in ("A_Const", "SQLValueFunction"):
        return True
    if kind == "TypeCast":
        return _non_volatile(expression.arg)
    if kind == "FuncCall":
        name = str(expression.funcname[-1].sval).lower()
        return name in NON_VOLATILE and all(_non_volatile(a) for a in expression.args or ())
    if kind == "A_Expr":
        return all(_non_volatile(side) for side in (expression.lexpr, expression.rexpr) if side)
    if kind == "A_ArrayExpr":
        return all(_non_volatile(element) for element in expression.elements or ())
    return False


def _alter_type(command: Any, table: str | None, schema: Schema) -> Effect:
    """A column's new type: no rewrite when binary coercible from the one before, no break when
    it only widens; a USING clause, or a type before that is not known, counts as both."""
    column = str(command.name)
    after = TypeName.of(command.def_.typeName)
    before = schema.type_of(table, column)
    if table:
        schema.learn_type(table, column, after)
    if before is None:
        unknown = "changes a column's type (from a type the plan does not know)"
        return Effect("alter-column-type", table, ACCESS_EXCLUSIVE, rewrite=True, breaks=unknown)
    rewrite, fits = widens(before, after)
    if command.def_.raw_default is not None and not _same_column(command.def_.raw_default, column):
        rewrite = True
    breaks = None if fits else f"changes a column's type from {before} to {after}"
    return Effect("alter-column-type", table, ACCESS_EXCLUSIVE, rewrite=rewrite, breaks=breaks)


def _same_column(expression: Any, column: str) -> bool:
    """Whether a USING expression is the column itself, cast or not (the contents unchanged)."""
    if type(expression).__name__ == "TypeCast":
        return _same_column(expression.arg, column)
    fields = getattr(expression, "fields", None) or ()
    return type(expression).__name__ == "ColumnRef" and [str(f.sval) for f in fields] == [column]


def _set_not_null(column: str, table: str | None, schema: Schema, major: int) -> Effect:
    """SET NOT NULL scans the table under its lock, unless (from 12) a valid CHECK (col IS NOT
    NULL) proves it; without such a check it may break code still writing NULLs."""
    proven = schema.proves_not_null(table, column)
    scan = not (proven and major >= NOT_NULL_PROVEN_BY_CHECK)
    breaks = None if proven else "adds NOT NULL"
    return Effect("set-not-null", table, ACCESS_EXCLUSIVE, scan=scan, breaks=breaks)


def _add_constraint(constraint: Any, table: str | None, schema: Schema) -> list[Effect]:
    kind, validated = constraint.contype, not constraint.skip_validation
    if kind == ConstrType.CONSTR_FOREIGN:
        lock = "SHARE ROW EXCLUSIVE"
        referenced = str(constraint.pktable.relname)
        return [
            Effect("add-foreign-key", table, lock, scan=validated),
            Effect("add-foreign-key", referenced, lock),
        ]
    if kind == ConstrType.CONSTR_CHECK:
        expression = constraint.raw_expr
        if type(expression).__name__ == "NullTest" and table and constraint.conname:
            fields: Any = getattr(expression.arg, "fields", None) or ()
            if len(fields) == 1 and int(expression.nulltesttype) == 1:  # IS NOT NULL
                schema.learn_check(str(constraint.conname), table, str(fields[0].sval), validated)
        return [Effect("add-check", table, ACCESS_EXCLUSIVE, scan=validated)]
    if kind in (ConstrType.CONSTR_UNIQUE, ConstrType.CONSTR_PRIMARY, ConstrType.CONSTR_EXCLUSION):
        builds = not constraint.indexname
        return [Effect("add-unique", table, ACCESS_EXCLUSIVE, scan=builds)]
    return [Effect("alter-table", table, ACCESS_EXCLUSIVE, scan=validated)]


def _attach(partition: Any, table: str | None, major: int) -> list[Effect]:
    """ATTACH PARTITION: SHARE UPDATE EXCLUSIVE on the parent from 12 (ACCESS EXCLUSIVE
    before); the new partition is scanned for rows outside its bound under ACCESS EXCLUSIVE."""
    parent = "SHARE UPDATE EXCLUSIVE" if major >= ATTACH_WITHOUT_BLOCKING else ACCESS_EXCLUSIVE
    attached = str(partition.name.relname)
    return [
        Effect("attach-partition", table, parent),
        Effect("attach-partition", attached, ACCESS_EXCLUSIVE, scan=True),
    ]


def _detach(partition: Any, table: str | None, major: int) -> list[Effect]:
    """DETACH PARTITION: ACCESS EXCLUSIVE on the parent and the partition; CONCURRENTLY (from
    14) takes SHARE UPDATE EXCLUSIVE on both instead."""
    concurrent = bool(partition.concurrent) and major >= DETACH_CONCURRENTLY
    lock = "SHARE UPDATE EXCLUSIVE" if concurrent else ACCESS_EXCLUSIVE
    detached = str(partition.name.relname)
    return [Effect("detach-partition", table, lock), Effect("detach-partition", detached, lock)]
