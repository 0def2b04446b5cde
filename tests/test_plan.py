"""`inv db.plan` end to end: a table with rows, then revisions that add a NOT NULL column
without a default, create an index without CONCURRENTLY, drop a column, and a data migration
that only runs online. The report names each with its lock and the table's size, in the three
formats, and `--fail-on` sets the exit code."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Project, Server

pytestmark = pytest.mark.e2e


def pending_revisions(project: Project, server: Server, database: str) -> str:
    """The database at head with 2000 books; four revisions on top. Returns the head before."""
    assert project.inv("db.upgrade").code == 0
    server.execute(
        "INSERT INTO \"user\" (email, name, created_at) VALUES ('a@example.com', 'a', now())",
        database=database,
    )
    server.execute(
        "INSERT INTO book (title, author, owner_id) "
        "SELECT 't' || i, 'a', (SELECT min(id) FROM \"user\") FROM generate_series(1, 2000) i",
        database=database,
    )
    server.execute("ANALYZE book", database=database)
    parent = project.head()
    project.add_revision(
        "aaaa00000001",
        parent,
        'op.add_column("book", sa.Column("isbn", sa.Text(), nullable=False))',
        downgrade=('op.drop_column("book", "isbn")',),
    )
    project.add_revision(
        "aaaa00000002",
        "aaaa00000001",
        'op.create_index("ix_book_title", "book", ["title"])',
        downgrade=('op.drop_index("ix_book_title", table_name="book")',),
    )
    project.add_revision("aaaa00000003", "aaaa00000002", 'op.drop_column("book", "author")')
    project.add_revision(
        "aaaa00000004",
        "aaaa00000003",
        'rows = op.get_bind().execute(sa.text("SELECT count(*) FROM book")).scalar()',
        "op.execute(f\"COMMENT ON TABLE book IS '{rows} books'\")",
    )
    return parent


def test_the_plan_names_locks_sizes_and_online_only_revisions(
    project: Project, pg_server: Server, database: str
) -> None:
    parent = pending_revisions(project, pg_server, database)
    shown = project.inv("db.plan", "--format", "json", "--fail-on", "never")
    assert shown.code == 0, shown.output
    report = json.loads(shown.stdout)
    assert report["version"] == 1 and report["from"] == parent
    by_revision = {r["revision"]: r for r in report["revisions"]}
    assert list(by_revision) == ["aaaa00000001", "aaaa00000002", "aaaa00000003", "aaaa00000004"]

    added = by_revision["aaaa00000001"]
    rules = {f["rule"]: f for f in added["findings"]}
    assert rules["adding-required-field"]["severity"] == "error"
    assert rules["adding-required-field"]["lock"] == "ACCESS EXCLUSIVE"
    assert rules["adding-required-field"]["table"] == "book"
    (book,) = added["tables"]
    assert book["name"] == "book" and book["rows"] == 2000 and book["bytes"] > 0
    assert added["downgrade"] == {"present": True, "loses_data": True}

    index = {f["rule"]: f for f in by_revision["aaaa00000002"]["findings"]}
    assert index["require-concurrent-index-creation"]["lock"] == "SHARE"
    assert "CREATE INDEX ix_book_title ON book (title)" in by_revision["aaaa00000002"]["sql"]

    dropped = {f["rule"]: f for f in by_revision["aaaa00000003"]["findings"]}
    assert dropped["breaks-running-code"]["lock"] == "ACCESS EXCLUSIVE"
    assert "drops a column" in dropped["breaks-running-code"]["message"]
    assert {"rule": "no-downgrade"}.items() <= next(
        f for f in by_revision["aaaa00000003"]["findings"] if f["rule"] == "no-downgrade"
    ).items()

    data = by_revision["aaaa00000004"]
    assert data["online_only"] is True and data["sql"] == ""
    # The plan reads only: nothing was applied.
    rows = pg_server.execute("SELECT version_num FROM alembic_version", database=database)
    assert rows == [(parent,)]


def test_text_and_markdown_reports(project: Project, pg_server: Server, database: str) -> None:
    pending_revisions(project, pg_server, database)
    text = project.inv("db.plan", "--fail-on", "never")
    assert text.code == 0, text.output
    assert "ACCESS EXCLUSIVE on book (2.0 k rows" in text.stdout
    assert "online-only" in text.stdout and "aaaa00000003" in text.stdout
    assert "Running upgrade" not in text.output  # the offline rendering: shown with --debug
    markdown = project.inv("db.plan", "--format", "markdown", "--fail-on", "never")
    assert markdown.code == 0, markdown.output
    assert "| `aaaa00000001` |" in markdown.stdout
    assert "<details><summary>SQL</summary>" in markdown.stdout
    assert len(markdown.stdout) < 65536


def test_fail_on_sets_the_exit_code(project: Project, pg_server: Server, database: str) -> None:
    pending_revisions(project, pg_server, database)
    assert project.inv("db.plan").code == 1  # errors found: the default fails on error
    assert project.inv("db.plan", "--fail-on", "never").code == 0
    assert project.inv("db.plan", "--fail-on", "warning").code == 1
    assert project.inv("db.plan", "--since", "aaaa00000003", "--fail-on", "error").code == 0
    # "base" and a unique prefix name a start as Alembic takes them
    from_base = project.inv("db.plan", "--since", "base", "--format", "json", "--fail-on", "never")
    assert from_base.code == 0, from_base.output
    assert json.loads(from_base.stdout)["revisions"][0]["revision"] == "f2030d31309f"
    prefix = project.inv("db.plan", "--since", "aaaa0000000", "--fail-on", "never")
    assert prefix.code == 1 and "names several revisions" in prefix.stderr, prefix.output


def test_nothing_pending_reports_the_check(project: Project) -> None:
    assert project.inv("db.upgrade").code == 0
    shown = project.inv("db.plan", "--format", "json")
    assert shown.code == 0, shown.output
    report = json.loads(shown.stdout)
    assert report["revisions"] == [] and report["check"].startswith("ok")


def test_a_protected_upgrade_and_the_release_dry_run_show_the_plan(
    project: Project, pg_server: Server, database: str
) -> None:
    pending_revisions(project, pg_server, database)
    refused = project.inv("db.upgrade", KUBEMIGRATE_PROTECTED="true")
    assert refused.code == 1, refused.output
    assert "Plan for local" in refused.stderr and "ACCESS EXCLUSIVE on book" in refused.stderr
    dry = project.inv("release", "--dry-run", KUBEMIGRATE_PROTECTED="true")
    assert dry.code == 0, dry.output
    assert "breaks-running-code" in dry.stdout
