"""The plan's rules as a table: from a SQL statement to the lock it takes, whether it rewrites
or scans the table, and whether the code still running survives it; per server major where
PostgreSQL's behaviour changed. Then each statement is run on the embedded server, in a
transaction rolled back, and the lock and rewrite measured there must be the inferred ones."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest

from kubemigrate.review import locks, rehearsal
from kubemigrate.review.rules import RULES, classify
from kubemigrate.review.schema import Schema, TypeName, widens
from tests.conftest import ADMIN_PASSWORD, Server

# The tables the statements run against: what `schema()` tells the rules, and what the
# measuring database holds (with rows, so a rewrite shows).
SETUP = """
CREATE TABLE author (id integer PRIMARY KEY, name varchar(40));
CREATE TABLE book (
    id integer PRIMARY KEY, title varchar(20), note text, price numeric(8,2), pages smallint,
    author_id integer, isbn text
);
INSERT INTO author SELECT i, 'a' || i FROM generate_series(1, 20) i;
INSERT INTO book SELECT i, 't' || i, 'n', 1.5, 10, 1, NULL FROM generate_series(1, 200) i;
ALTER TABLE book ADD CONSTRAINT isbn_present CHECK (isbn IS NOT NULL) NOT VALID;
UPDATE book SET isbn = 'x';
ALTER TABLE book VALIDATE CONSTRAINT isbn_present;
CREATE TABLE events (id integer, at date) PARTITION BY RANGE (at);
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE events_2027 (id integer, at date);
INSERT INTO events SELECT i, date '2026-03-01' FROM generate_series(1, 50) i;
INSERT INTO events_2027 SELECT i, date '2027-03-01' FROM generate_series(1, 50) i;
"""
COLUMNS = {
    ("author", "id"): "integer",
    ("author", "name"): "character varying(40)",
    ("book", "id"): "integer",
    ("book", "title"): "character varying(20)",
    ("book", "note"): "text",
    ("book", "price"): "numeric(8,2)",
    ("book", "pages"): "smallint",
    ("book", "author_id"): "integer",
    ("book", "isbn"): "text",
}


def schema() -> Schema:
    known = Schema()
    for (table, column), printed in COLUMNS.items():
        known.learn_type(table, column, TypeName.printed(printed))
    known.learn_check("isbn_present", "book", "isbn", valid=True)
    return known


AE, SUE = "ACCESS EXCLUSIVE", "SHARE UPDATE EXCLUSIVE"
# statement, server major, (rule, table, lock, rewrite, scan, breaks running code)
TABLE: list[tuple[str, int, tuple[str, str, str, bool, bool, bool]]] = [
    (
        "CREATE INDEX ix ON book (title)",
        18,
        ("create-index", "book", "SHARE", False, False, False),
    ),
    (
        "CREATE UNIQUE INDEX CONCURRENTLY ix ON book (title)",
        18,
        ("create-index-concurrently", "book", SUE, False, False, False),
    ),
    (
        "DROP TABLE book",
        18,
        ("drop-table", "book", AE, False, False, True),
    ),
    (
        "ALTER TABLE book RENAME TO books",
        18,
        ("rename-table", "book", AE, False, False, True),
    ),
    (
        "ALTER TABLE book RENAME COLUMN note TO notes",
        18,
        ("rename-column", "book", AE, False, False, True),
    ),
    (
        "ALTER TABLE book DROP COLUMN note",
        18,
        ("drop-column", "book", AE, False, False, True),
    ),
    # ADD COLUMN: the default's volatility, and the major (no rewrite for a constant from 11)
    (
        "ALTER TABLE book ADD COLUMN is_active BOOLEAN DEFAULT 'true' NOT NULL",
        18,
        ("add-column", "book", AE, False, False, False),
    ),
    (
        "ALTER TABLE book ADD COLUMN is_active BOOLEAN DEFAULT 'true' NOT NULL",
        10,
        ("add-column", "book", AE, True, False, False),
    ),
    (
        "ALTER TABLE book ADD COLUMN seen timestamptz DEFAULT now() NOT NULL",
        18,
        ("add-column", "book", AE, False, False, False),
    ),
    (
        "ALTER TABLE book ADD COLUMN seen timestamptz DEFAULT CURRENT_TIMESTAMP",
        18,
        ("add-column", "book", AE, False, False, False),
    ),
    (
        "ALTER TABLE book ADD COLUMN seen timestamptz DEFAULT clock_timestamp()",
        18,
        ("add-column", "book", AE, True, False, False),
    ),
    (
        "ALTER TABLE book ADD COLUMN uid uuid DEFAULT gen_random_uuid() NOT NULL",
        18,
        ("add-column", "book", AE, True, False, False),
    ),
    (
        "ALTER TABLE book ADD COLUMN code text NOT NULL",
        18,
        ("add-column", "book", AE, False, False, True),
    ),
    (
        "ALTER TABLE book ADD COLUMN code text",
        18,
        ("add-column", "book", AE, False, False, False),
    ),
    # SET DATA TYPE: binary coercible changes neither rewrite nor break; widening ints rewrite
    (
        "ALTER TABLE book ALTER COLUMN title TYPE varchar(40)",
        18,
        ("alter-column-type", "book", AE, False, False, False),
    ),
    (
        "ALTER TABLE book ALTER COLUMN title TYPE text",
        18,
        ("alter-column-type", "book", AE, False, False, False),
    ),
    (
        "ALTER TABLE book ALTER COLUMN title TYPE varchar(10)",
        18,
        ("alter-column-type", "book", AE, True, False, True),
    ),
    (
        "ALTER TABLE book ALTER COLUMN price TYPE numeric(12,2)",
        18,
        ("alter-column-type", "book", AE, False, False, False),
    ),
    (
        "ALTER TABLE book ALTER COLUMN id TYPE bigint",
        18,
        ("alter-column-type", "book", AE, True, False, False),
    ),
    (
        "ALTER TABLE book ALTER COLUMN note TYPE integer USING length(note)",
        18,
        ("alter-column-type", "book", AE, True, False, True),
    ),
    # SET NOT NULL: a valid CHECK (col IS NOT NULL) spares the scan from 12
    (
        "ALTER TABLE book ALTER COLUMN isbn SET NOT NULL",
        18,
        ("set-not-null", "book", AE, False, False, False),
    ),
    (
        "ALTER TABLE book ALTER COLUMN isbn SET NOT NULL",
        11,
        ("set-not-null", "book", AE, False, True, False),
    ),
    (
        "ALTER TABLE book ALTER COLUMN note SET NOT NULL",
        18,
        ("set-not-null", "book", AE, False, True, True),
    ),
    # constraints: NOT VALID, then VALIDATE under a lighter lock
    (
        "ALTER TABLE book ADD CONSTRAINT positive CHECK (price > 0) NOT VALID",
        18,
        ("add-check", "book", AE, False, False, False),
    ),
    (
        "ALTER TABLE book ADD CONSTRAINT positive CHECK (price > 0)",
        18,
        ("add-check", "book", AE, False, True, False),
    ),
    (
        "ALTER TABLE book VALIDATE CONSTRAINT isbn_present",
        18,
        ("validate-constraint", "book", SUE, False, True, False),
    ),
    (
        "ALTER TABLE book ADD CONSTRAINT by FOREIGN KEY (author_id) REFERENCES author (id) "
        "NOT VALID",
        18,
        ("add-foreign-key", "book", "SHARE ROW EXCLUSIVE", False, False, False),
    ),
    (
        "ALTER TABLE book SET (fillfactor = 70)",
        18,
        ("set-statistics", "book", SUE, False, False, False),
    ),
    (
        "UPDATE book SET note = 'm'",
        18,
        ("data", "book", "ROW EXCLUSIVE", False, False, False),
    ),
    (
        "TRUNCATE book",
        18,
        ("truncate", "book", AE, True, False, False),
    ),
    (
        "VACUUM FULL book",
        18,
        ("vacuum-full", "book", AE, True, False, False),
    ),
    # partitions: ATTACH spares the parent from 12, DETACH CONCURRENTLY exists from 14
    (
        "ALTER TABLE events ATTACH PARTITION events_2027 FOR VALUES FROM ('2027-01-01') "
        "TO ('2028-01-01')",
        18,
        ("attach-partition", "events_2027", AE, False, True, False),
    ),
    (
        "ALTER TABLE events ATTACH PARTITION events_2027 FOR VALUES FROM ('2027-01-01') "
        "TO ('2028-01-01')",
        11,
        ("attach-partition", "events", AE, False, True, False),
    ),
    (
        "ALTER TABLE events DETACH PARTITION events_2026",
        18,
        ("detach-partition", "events", AE, False, False, False),
    ),
    (
        "ALTER TABLE events DETACH PARTITION events_2026 CONCURRENTLY",
        18,
        ("detach-partition", "events", SUE, False, False, False),
    ),
    (
        "ALTER TABLE events DETACH PARTITION events_2026 CONCURRENTLY",
        13,
        ("detach-partition", "events", AE, False, False, False),
    ),
    ("REINDEX TABLE book", 18, ("reindex", "book", "SHARE", False, False, False)),
    (
        "REINDEX TABLE CONCURRENTLY book",
        18,
        ("reindex-concurrently", "book", SUE, False, False, False),
    ),
    # a new table's foreign key locks the table it references
    (
        "CREATE TABLE review (id integer PRIMARY KEY, book_id integer REFERENCES book (id))",
        18,
        ("add-foreign-key", "book", "SHARE ROW EXCLUSIVE", False, False, False),
    ),
    # several subcommands: each one's effect, the strongest lock
    (
        "ALTER TABLE book ALTER COLUMN title TYPE text, DROP COLUMN note",
        18,
        ("alter-column-type", "book", AE, False, False, True),
    ),
]


@pytest.mark.parametrize(("statement", "major", "expected"), TABLE)
def test_a_rule(
    statement: str, major: int, expected: tuple[str, str, str, bool, bool, bool]
) -> None:
    rule, table, lock, rewrite, scan, breaks = expected
    found = classify(statement, schema(), major)
    assert found.error is None
    effect = locks.summary(found)
    assert effect is not None
    assert (effect.table, effect.lock) == (table, lock)
    assert rule in {e.rule for e in found.effects} and rule in RULES
    assert (effect.rewrite, effect.scan, bool(effect.breaks)) == (rewrite, scan, breaks)


def test_what_the_parser_cannot_read_is_said_as_such() -> None:
    found = classify("ALTER TABLE book ADD COLUMN", schema(), 18)
    assert found.error and "parser cannot read it" in found.error
    (finding,) = locks.inferred([found])
    assert finding.rule == "unparsed" and "review it by hand" in finding.message


def test_a_type_change_is_judged_against_the_type_a_statement_before_gave() -> None:
    known = schema()
    classify("ALTER TABLE book ADD COLUMN code varchar(5)", known, 18)
    effect = locks.summary(classify("ALTER TABLE book ALTER COLUMN code TYPE text", known, 18))
    assert effect is not None and not effect.rewrite and not effect.breaks
    unknown = locks.summary(classify("ALTER TABLE other ALTER COLUMN x TYPE text", known, 18))
    assert unknown is not None and unknown.rewrite and unknown.breaks


def test_a_check_validated_earlier_in_the_plan_proves_not_null() -> None:
    known = Schema()
    classify("ALTER TABLE t ADD CONSTRAINT c CHECK (x IS NOT NULL) NOT VALID", known, 18)
    before = locks.summary(classify("ALTER TABLE t ALTER COLUMN x SET NOT NULL", known, 18))
    classify("ALTER TABLE t VALIDATE CONSTRAINT c", known, 18)
    after = locks.summary(classify("ALTER TABLE t ALTER COLUMN x SET NOT NULL", known, 18))
    assert before is not None and before.scan and before.breaks
    assert after is not None and not after.scan and not after.breaks


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ("character varying(20)", "varchar(30)", (False, True)),
        ("character varying(20)", "text", (False, True)),
        ("text", "varchar(5)", (True, False)),
        ("numeric(8,2)", "numeric(10,2)", (False, True)),
        ("numeric(8,2)", "numeric(10,3)", (True, False)),
        ("integer", "bigint", (True, True)),
        ("bigint", "integer", (True, False)),
    ],
)
def test_widening(before: str, after: str, expected: tuple[bool, bool]) -> None:
    assert widens(TypeName.printed(before), TypeName.printed(after)) == expected


@pytest.fixture(scope="module")
def measuring(pg_server: Server) -> Iterator[Any]:
    """A database holding SETUP's tables, and a connection to it as the superuser."""
    pg_server.execute("DROP DATABASE IF EXISTS rules_measured WITH (FORCE)")
    pg_server.execute("CREATE DATABASE rules_measured")
    connection = psycopg2.connect(
        host="127.0.0.1",
        port=pg_server.port,
        user="postgres",
        password=ADMIN_PASSWORD,
        dbname="rules_measured",
    )
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(SETUP)
    try:
        yield connection
    finally:
        connection.close()
        pg_server.execute("DROP DATABASE IF EXISTS rules_measured WITH (FORCE)")


# Not measurable in a transaction (CONCURRENTLY, VACUUM), or failing on a table with rows.
UNMEASURED = ("CONCURRENTLY", "VACUUM", "ADD COLUMN code text NOT NULL")
MEASURABLE = [
    (statement, expected)
    for statement, major, expected in TABLE
    if major == 18 and not any(word in statement for word in UNMEASURED)
]


@pytest.mark.parametrize(("statement", "expected"), MEASURABLE)
def test_the_rehearsal_measures_what_the_rule_infers(
    measuring: Any, statement: str, expected: tuple[str, str, str, bool, bool, bool]
) -> None:
    """On PostgreSQL 18: the lock the statement took on its table, and whether the table's
    file changed, are the inferred ones."""
    _, table, lock, rewrite, _, _ = expected
    with measuring.cursor() as cursor:
        cursor.execute("BEGIN")
        try:
            existing = rehearsal.relations(cursor)
            measured = rehearsal.measured(cursor, statement, existing)
        finally:
            cursor.execute("ROLLBACK")
    assert measured.locks.get(table) == lock, measured
    assert (table in measured.rewrites) == rewrite, measured


def test_the_readme_shows_every_rule_with_its_source() -> None:
    from tests.conftest import REPO

    text = (REPO / "README.md").read_text()
    for rule in RULES.values():
        assert f"| `{rule.name}` | {rule.lock} | {rule.effect or '-'} | {rule.source} |" in text
