"""SQL split into statements by PostgreSQL's own scanner (kubemigrate.postgres.statements)."""

from __future__ import annotations

import pytest

from kubemigrate.postgres.statements import split

FUNCTION = """CREATE FUNCTION shout() RETURNS trigger AS $$
BEGIN
    NEW.title := upper(NEW.title);

    RETURN NEW;
END;
$$ LANGUAGE plpgsql"""


def test_alembic_offline_sql() -> None:
    sql = (
        "BEGIN;\n\n-- Running upgrade a -> b\n\nALTER TABLE book ADD COLUMN isbn TEXT;\n\n"
        "UPDATE alembic_version SET version_num='b' WHERE alembic_version.version_num = 'a';"
        "\n\nCOMMIT;\n\n"
    )
    assert split(sql) == [
        "BEGIN",
        "ALTER TABLE book ADD COLUMN isbn TEXT",
        "UPDATE alembic_version SET version_num='b' WHERE alembic_version.version_num = 'a'",
        "COMMIT",
    ]


def test_a_function_body_stays_one_statement() -> None:
    assert split(f"{FUNCTION};\n\nSELECT 1;") == [FUNCTION, "SELECT 1"]


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT 'a;b'",
        "SELECT 'it''s; here'",
        'SELECT 1 AS "odd;name"',
        "DO $body$ BEGIN PERFORM 1; END $body$",
        "SELECT $$;$$, $x$ $$ ; $x$",
        "SELECT 1 /* a; comment */ + 1",
        "SELECT 1 -- trailing; comment\n + 1",
    ],
)
def test_semicolons_inside_quotes_and_comments(statement: str) -> None:
    assert split(f"{statement};\nSELECT 2;") == [statement, "SELECT 2"]


def test_leading_comments_and_empty_statements_are_dropped() -> None:
    assert split("-- one\n-- two\nSELECT 1;;\n  ;\n-- end\n") == ["SELECT 1"]


def test_an_unterminated_quote_keeps_the_rest() -> None:
    assert split("SELECT 'open; still;") == ["SELECT 'open; still;"]
