"""What the plan knows of the tables before a statement runs: each column's type and the
columns a valid `CHECK (col IS NOT NULL)` proves, read from the database when it is reachable
and learned from the pending statements as they go (a column a revision adds, a type it
changes, a check constraint it validates). A type change is judged against the type before it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# The names PostgreSQL prints (format_type) and the parser's, to one name each.
ALIASES = {
    "character varying": "varchar",
    "character": "bpchar",
    "char": "bpchar",
    "integer": "int4",
    "int": "int4",
    "smallint": "int2",
    "bigint": "int8",
    "boolean": "bool",
    "real": "float4",
    "double precision": "float8",
    "decimal": "numeric",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz",
    "time without time zone": "time",
    "time with time zone": "timetz",
    "bit varying": "varbit",
    "serial": "int4",
    "bigserial": "int8",
    "smallserial": "int2",
}
# Integers and floats that hold every value of the one before (a rewrite, yet no break).
WIDER = {("int2", "int4"), ("int2", "int8"), ("int4", "int8"), ("float4", "float8")}


@dataclass(frozen=True)
class TypeName:
    """A column type: its name (as `ALIASES` names it), its modifiers, and whether an array."""

    name: str
    mods: tuple[int, ...] = ()
    array: bool = False

    @classmethod
    def of(cls, node: Any) -> TypeName:
        """From the parser's TypeName node."""
        names = [str(part.sval) for part in node.names]
        name = names[-1] if names[0] == "pg_catalog" or len(names) == 1 else ".".join(names)
        mods = tuple(
            int(m.val.ival) for m in node.typmods or () if hasattr(getattr(m, "val", None), "ival")
        )
        return cls(ALIASES.get(name, name), mods, bool(node.arrayBounds))

    @classmethod
    def printed(cls, text: str) -> TypeName:
        """From `format_type`'s text: 'character varying(20)', 'numeric(10,2)', 'text[]'."""
        array = text.endswith("[]")
        match = re.fullmatch(r"(?P<name>[^(\[]+?)\s*(?:\((?P<mods>[\d, ]+)\))?(?:\[\])?", text)
        if match is None:
            return cls(text, (), array)
        name = match["name"].strip()
        mods = tuple(int(m) for m in (match["mods"] or "").split(",") if m.strip())
        return cls(ALIASES.get(name, name), mods, array)

    def __str__(self) -> str:
        mods = f"({','.join(map(str, self.mods))})" if self.mods else ""
        return f"{self.name}{mods}{'[]' if self.array else ''}"


def widens(before: TypeName, after: TypeName) -> tuple[bool, bool]:
    """(whether the table is rewritten, whether every value of `before` fits `after`), per
    PostgreSQL's binary-coercible changes: varchar to a longer varchar or to text, numeric to
    a larger precision of the same scale, varbit to a longer one."""
    if before.array != after.array:
        return True, False
    same_text = {before.name, after.name} <= {"varchar", "text"}
    if same_text:
        shorter = (
            after.name == "varchar"
            and after.mods
            and (before.name == "text" or not before.mods or after.mods[0] < before.mods[0])
        )
        return bool(shorter), not shorter
    if before.name == after.name and before.name in ("numeric", "varbit", "bit"):
        if not after.mods:
            return False, True
        if before.name == "numeric" and len(before.mods) == len(after.mods) == 2:
            fits = after.mods[1] == before.mods[1] and after.mods[0] >= before.mods[0]
            return not fits, fits
        fits = bool(before.mods) and after.mods[0] >= before.mods[0] and before.name == "varbit"
        return not fits, fits
    if before == after:
        return False, True
    return True, (before.name, after.name) in WIDER


@dataclass
class Schema:
    """Column types and proven NOT NULL columns, by (table, column)."""

    types: dict[tuple[str, str], TypeName] = field(default_factory=dict)
    not_null_checks: dict[str, tuple[str, str]] = field(default_factory=dict)  # name: column
    valid_checks: set[str] = field(default_factory=set)

    def learn_type(self, table: str, column: str, type_name: TypeName) -> None:
        self.types[(table, column)] = type_name

    def type_of(self, table: str | None, column: str) -> TypeName | None:
        return self.types.get((table or "", column))

    def learn_check(self, name: str, table: str, column: str, valid: bool) -> None:
        self.not_null_checks[name] = (table, column)
        if valid:
            self.valid_checks.add(name)

    def validate(self, name: str) -> None:
        if name in self.not_null_checks:
            self.valid_checks.add(name)

    def proves_not_null(self, table: str | None, column: str) -> bool:
        return any(self.not_null_checks[name] == (table, column) for name in self.valid_checks)


TYPES = (
    "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) "
    "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
    "WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped "
    "AND pg_table_is_visible(c.oid)"
)
CHECKS = (
    "SELECT c.relname, k.conname, pg_get_constraintdef(k.oid), k.convalidated "
    "FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
    "WHERE k.contype = 'c' AND pg_table_is_visible(c.oid)"
)
NOT_NULL_CHECK = re.compile(r'^CHECK \(\(?"?(?P<column>[^"()\s]+)"? IS NOT NULL\)?\)', re.I)


def read(connection: Any) -> Schema:
    """What the database's visible tables hold (a bare psycopg2 connection; reads only)."""
    schema = Schema()
    with connection.cursor() as cursor:
        cursor.execute(TYPES)
        for table, column, printed in cursor.fetchall():
            schema.learn_type(str(table), str(column), TypeName.printed(str(printed)))
        cursor.execute(CHECKS)
        for table, name, definition, valid in cursor.fetchall():
            match = NOT_NULL_CHECK.match(str(definition))
            if match:
                schema.learn_check(str(name), str(table), match["column"], bool(valid))
    connection.rollback()
    return schema
