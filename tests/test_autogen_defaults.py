"""`db.revision` gives an added NOT NULL column the server default its model default implies
(or a comment where it cannot), so the migration applies to a table that has rows.

The unit tests run `revision_rules` on hand-built migration scripts and render them with
Alembic; the e2e tests run `inv db.revision` and `inv db.upgrade` on a user table with a row.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import render_python_code
from alembic.operations import ops

from kubemigrate.migrations.autogenerate import NotNullNeedsDefault, revision_rules
from tests import test_autogenerate
from tests.conftest import Project, Server

models_project = test_autogenerate.models_project  # the fixture, shared

COMMENT = "needs a server default or a data step before it can be applied to a table with rows"


class Status(enum.Enum):
    ACTIVE = "active"
    RETIRED = "retired"


def user_column(*args: Any, **kw: Any) -> sa.Column[Any]:
    """A column `flag` of a model table `user` (as the models' metadata holds it)."""
    kw.setdefault("nullable", False)
    column = sa.Column("flag", *args, **kw)
    sa.Table("user", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), column)
    return column


def rewrite(*upgrade: ops.MigrateOperation) -> ops.UpgradeOps:
    """The upgrade ops of a migration script made of `upgrade`, after `revision_rules`."""
    script = ops.MigrationScript("abc123", ops.UpgradeOps(list(upgrade)), ops.DowngradeOps([]))
    revision_rules(None, ("head",), [script])  # type: ignore[arg-type]
    assert script.upgrade_ops is not None
    return script.upgrade_ops


def add(column: sa.Column[Any]) -> ops.ModifyTableOps:
    return ops.ModifyTableOps("user", [ops.AddColumnOp("user", column)])


def rendered(column: sa.Column[Any]) -> str:
    """The upgrade code autogenerate writes for adding `column` to `user`."""
    return render_python_code(rewrite(add(column)))


def added_lines(code: str) -> list[str]:
    return [line.strip() for line in code.splitlines() if line.strip() and "###" not in line]


@pytest.mark.parametrize(
    ("type_", "default", "server_default"),
    [
        (sa.Boolean(), True, "'true'"),
        (sa.Boolean(), False, "'false'"),
        (sa.Integer(), 0, "'0'"),
        (sa.Integer(), -7, "'-7'"),
        (sa.Float(), 1.5, "'1.5'"),
        (sa.String(), "abc", "'abc'"),
        (sa.String(), "", "''"),
        (sa.Enum(Status), Status.ACTIVE, "'ACTIVE'"),
        (
            sa.Enum(Status, values_callable=lambda cls: [m.value for m in cls]),
            Status.RETIRED,
            "'retired'",
        ),
    ],
    ids=["true", "false", "zero", "negative", "float", "str", "empty-str", "enum", "enum-values"],
)
def test_plain_default_becomes_server_default(
    type_: sa.types.TypeEngine[Any], default: object, server_default: str
) -> None:
    code = rendered(user_column(type_, default=default))
    (line,) = added_lines(code)
    assert f"server_default={server_default}, nullable=False))" in line, code
    assert line.startswith("op.add_column('user', sa.Column('flag', ")


def test_quote_edged_string_is_rendered_as_sql_text() -> None:
    code = rendered(user_column(sa.String(), default="'quoted'"))
    assert """server_default=sa.text("'''quoted'''")""" in code, code


@pytest.mark.parametrize(
    "default",
    [dt.datetime.now, lambda: 1, sa.func.now(), dt.date(2020, 1, 1), None],
    ids=["callable", "lambda", "sql-expression", "other-value", "none"],
)
def test_other_default_gets_a_comment_above_the_column(default: object) -> None:
    code = rendered(user_column(sa.DateTime(), default=default))
    comment, add_column = added_lines(code)
    assert comment == f"# user.flag is NOT NULL: it {COMMENT}", code
    assert add_column == "op.add_column('user', sa.Column('flag', sa.DateTime(), nullable=False))"


def test_the_comment_is_an_operation_before_the_add() -> None:
    upgrade = rewrite(add(user_column(sa.DateTime(), default=dt.datetime.now)))
    (table_ops,) = upgrade.ops
    assert isinstance(table_ops, ops.ModifyTableOps)
    note, add_column = table_ops.ops
    assert isinstance(note, NotNullNeedsDefault) and isinstance(add_column, ops.AddColumnOp)
    assert add_column.column.server_default is None


def test_the_models_column_is_not_changed() -> None:
    column = user_column(sa.Boolean(), default=True)
    upgrade = rewrite(add(column))
    (table_ops,) = upgrade.ops
    assert isinstance(table_ops, ops.ModifyTableOps)
    (add_column,) = table_ops.ops
    assert isinstance(add_column, ops.AddColumnOp)
    assert add_column.column is not column and add_column.column.server_default is not None
    assert column.server_default is None and column.table.name == "user"


@pytest.mark.parametrize(
    "column",
    [
        user_column(sa.Boolean(), default=True, nullable=True),
        user_column(sa.Boolean(), default=True, server_default=sa.false()),
        user_column(sa.Integer(), default=5, primary_key=True),
        user_column(sa.Integer(), primary_key=True, autoincrement=True),
    ],
    ids=["nullable", "own-server-default", "primary-key", "primary-key-no-default"],
)
def test_columns_outside_the_rule_are_left_as_written(column: sa.Column[Any]) -> None:
    before = column.server_default
    upgrade = rewrite(add(column))
    (table_ops,) = upgrade.ops
    assert isinstance(table_ops, ops.ModifyTableOps)
    (add_column,) = table_ops.ops
    assert isinstance(add_column, ops.AddColumnOp) and add_column.column is column
    assert column.server_default is before


def test_create_table_is_left_as_written() -> None:
    table = sa.Table(
        "tag",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("pinned", sa.Boolean, nullable=False, default=False),
        sa.Column("seen", sa.DateTime, nullable=False, default=dt.datetime.now),
    )
    code = render_python_code(rewrite(ops.CreateTableOp.from_table(table)))
    assert "server_default" not in code, code
    assert not any(line.startswith("#") for line in added_lines(code)), code


# -- end to end: inv db.revision and db.upgrade on a table with a row ----------------------------


def add_user_field(project: Project, field: str) -> None:
    models = project.root / "testapp" / "entities" / "user" / "models.py"
    text = models.read_text()
    assert "    created_at: datetime" in text
    models.write_text(
        text.replace("    created_at: datetime", f"    {field}\n    created_at: datetime")
    )


def insert_user(pg_server: Server, database: str) -> None:
    pg_server.execute(
        "INSERT INTO \"user\" (email, name, created_at) VALUES ('ann@example.com', 'Ann', now())",
        database=database,
    )


def revision_for_a_new_field(
    project: Project, pg_server: Server, database: str, field: str, name: str
) -> str:
    """Upgrade, give table user a row, add `field` (called `name`) to the model; the text of
    the revision `inv db.revision` then writes."""
    assert project.inv("db.upgrade").code == 0
    insert_user(pg_server, database)
    add_user_field(project, field)
    made = project.inv("db.revision", f"add user.{name}")
    assert made.code == 0, made.output
    (script,) = project.versions.glob(f"*_add_user_{name}.py")
    return script.read_text()


@pytest.mark.e2e
def test_revision_adds_server_default_and_upgrades_a_table_with_rows(
    models_project: Project, pg_server: Server, database: str
) -> None:
    project = models_project
    field = "is_active: bool = Field(default=True)"
    text = revision_for_a_new_field(project, pg_server, database, field, "is_active")
    assert re.search(r"""server_default=(['"])true\1""", text), text
    assert COMMENT not in text
    # The plan reads the column's DEFAULT on the parse tree: a NOT NULL column with a constant
    # default breaks no running code and, from PostgreSQL 11, rewrites nothing.
    planned = project.inv("db.plan", "--format", "json")
    assert planned.code == 0, planned.output
    (revision,) = json.loads(planned.stdout)["revisions"]
    rules = {f["rule"]: f for f in revision["findings"]}
    assert "breaks-running-code" not in rules, rules
    assert rules["blocking-lock"]["lock"] == "ACCESS EXCLUSIVE"
    assert not rules["blocking-lock"]["rewrite"]

    upgraded = project.inv("db.upgrade")
    assert upgraded.code == 0, upgraded.output
    rows = pg_server.execute('SELECT email, is_active FROM "user"', database=database)
    assert rows == [("ann@example.com", True)]
    assert project.inv("db.check").code == 0


@pytest.mark.e2e
def test_revision_comments_a_callable_default(
    models_project: Project, pg_server: Server, database: str
) -> None:
    project = models_project
    field = "seen_at: datetime = Field(default_factory=_now)"
    text = revision_for_a_new_field(project, pg_server, database, field, "seen_at")
    lines = [line.strip() for line in text.splitlines()]
    (at,) = [i for i, line in enumerate(lines) if line.startswith("# user.seen_at is NOT NULL")]
    assert COMMENT in lines[at], text
    assert lines[at + 1].startswith("op.add_column("), text
    assert "seen_at" in " ".join(lines[at + 1 : at + 5]) and "server_default" not in text

    # The file is as Alembic wrote it, so it still cannot run on a table with rows.
    refused = project.inv("db.upgrade")
    assert refused.code != 0 and "seen_at" in refused.output, refused.output
    assert "Traceback" not in refused.output
