"""Dangerous migrations and protected environments: squawk's findings stop an upgrade on a
protected environment; downgrade, stamp and merge ask there, and refuse without a terminal."""

import pytest

from tests.conftest import Project, Server

pytestmark = pytest.mark.e2e


def add_unsafe_revision(project: Project) -> str:
    parent = project.head()
    project.add_revision(
        "0badc0ffee00",
        parent,
        'op.add_column("book", sa.Column("isbn", sa.Text(), nullable=False))',
        'op.create_index("ix_book_title", "book", ["title"])',
        'op.alter_column("book", "author", type_=sa.Text())',
        downgrade=(
            'op.drop_index("ix_book_title", table_name="book")',
            'op.drop_column("book", "isbn")',
        ),
    )
    return parent


def version(server: Server, database: str) -> object:
    return server.execute("SELECT version_num FROM alembic_version", database=database)[0][0]


def test_lint_reports_unsafe_operations_by_revision(project: Project) -> None:
    assert project.inv("db.upgrade").code == 0
    add_unsafe_revision(project)
    result = project.inv("db.lint")
    assert result.code == 1, result.output
    assert "0badc0ffee00: adding-required-field" in result.stdout
    assert "0badc0ffee00: require-concurrent-index-creation" in result.stdout
    assert "0badc0ffee00: changing-column-type" in result.stdout
    assert "error: 3 unsafe operation(s)" in result.stderr
    assert "f2030d31309f" not in result.stdout  # only what is pending


def test_protected_upgrade_stops_on_lint_unless_forced(
    project: Project, pg_server: Server, database: str
) -> None:
    assert project.inv("db.upgrade").code == 0
    parent = add_unsafe_revision(project)
    refused = project.inv("db.upgrade", KUBEMIGRATE_PROTECTED="true")
    assert refused.code == 1
    assert "lint: 0badc0ffee00: adding-required-field" in refused.stderr
    # squawk's three, and the NOT NULL column without a default as a pre-deploy revision that
    # breaks the running code (a protected environment has phases unless it says otherwise)
    assert "lint: 0badc0ffee00: pre-deploy-breaks-running-code" in refused.stderr
    assert "is protected and 4 pending operation(s) are unsafe" in refused.stderr
    assert version(pg_server, database) == parent
    forced = project.inv("db.upgrade", "--force", KUBEMIGRATE_PROTECTED="true")
    assert forced.code == 0, forced.output
    assert version(pg_server, database) == "0badc0ffee00"


def test_unprotected_upgrade_does_not_lint(project: Project) -> None:
    add_unsafe_revision(project)
    assert project.inv("db.upgrade").code == 0


@pytest.mark.parametrize(
    "argv",
    [["db.downgrade", "-1"], ["db.stamp", "base"]],
    ids=["downgrade", "stamp"],
)
def test_protected_changes_need_confirmation(
    project: Project, pg_server: Server, database: str, argv: list[str]
) -> None:
    assert project.inv("db.upgrade").code == 0
    head = version(pg_server, database)
    refused = project.inv(*argv, KUBEMIGRATE_PROTECTED="true")
    assert refused.code == 1
    assert "needs confirmation and there is no terminal" in refused.stderr
    assert version(pg_server, database) == head
    assert project.inv(*argv, "--yes", KUBEMIGRATE_PROTECTED="true").code == 0
    assert pg_server.execute("SELECT version_num FROM alembic_version", database=database) == []


def test_protected_merge_needs_confirmation(project: Project) -> None:
    head = project.inv("db.heads").stdout.split()[0]
    project.branch_revision("aaaaaaaaaaaa", head)
    project.branch_revision("bbbbbbbbbbbb", head)
    refused = project.inv("db.merge", "-m", "join", KUBEMIGRATE_PROTECTED="true")
    assert refused.code == 1 and "needs confirmation" in refused.stderr
    assert len(list(project.versions.glob("*join*.py"))) == 0
    assert project.inv("db.merge", "-m", "join", "--yes", KUBEMIGRATE_PROTECTED="1").code == 0
