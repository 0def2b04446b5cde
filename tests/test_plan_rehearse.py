"""`inv db.plan --rehearse` end to end: the pending revisions of `test_plan` (a NOT NULL column
without a default, an index without CONCURRENTLY, a dropped column, an online-only data
migration) and two type changes, one that rewrites the table and one that does not, run on a
throwaway copy on the embedded server. The locks and the rewrite are measured there, and the
environment's database is left as it was, schema and rows."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubemigrate.postgres.binaries import program
from kubemigrate.postgres.embedded import EmbeddedPostgres
from tests.conftest import ADMIN_PASSWORD, NS, PASSWORD, Project, Server
from tests.kubeapi.api import KubeAPIServer
from tests.test_plan import pending_revisions

pytestmark = pytest.mark.e2e


def with_type_changes(project: Project) -> None:
    project.add_revision(
        "aaaa00000005",
        "aaaa00000004",
        'op.alter_column("book", "id", type_=sa.BigInteger())',  # int to bigint: a rewrite
    )
    project.add_revision(
        "aaaa00000006",
        "aaaa00000005",
        'op.alter_column("book", "title", type_=sa.Text())',  # varchar to text: none
    )
    project.add_revision(
        "aaaa00000007",
        "aaaa00000006",
        "with op.get_context().autocommit_block():",
        '    op.create_index("ix_book_t", "book", ["title"], postgresql_concurrently=True)',
    )


def schema_and_rows(server: Server, database: str) -> tuple[str, list[tuple[object, ...]]]:
    """The database's schema, as pg_dump prints it, and a digest of every table's rows."""
    dumped = subprocess.run(
        [
            program("pg_dump"),
            "--schema-only",
            "-h",
            "127.0.0.1",
            "-p",
            str(server.port),
            "-U",
            "postgres",
            database,
        ],
        env={"PGPASSWORD": ADMIN_PASSWORD, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    schema = "\n".join(line for line in dumped.splitlines() if not line.startswith("\\"))
    rows = server.execute(
        "SELECT 'book', count(*), md5(string_agg(b::text, ',' ORDER BY id)) FROM book b "
        "UNION ALL SELECT 'user', count(*), md5(string_agg(u::text, ',' ORDER BY id)) "
        "FROM \"user\" u UNION ALL SELECT 'alembic_version', count(*), "
        "string_agg(version_num, ',') FROM alembic_version",
        database=database,
    )
    return schema, rows


@pytest.fixture
def embedded(project: Project) -> Iterator[EmbeddedPostgres]:
    """The project's embedded server (the rehearsal's), in the test's own directory."""
    project.env["KUBEMIGRATE_DATA_DIR"] = str(project.root / "pgdata")
    yield EmbeddedPostgres(project.root / "pgdata")
    EmbeddedPostgres(project.root / "pgdata").stop()


def findings(report: dict, revision: str) -> dict[str, dict]:
    (found,) = [r for r in report["revisions"] if r["revision"] == revision]
    return {f["rule"]: f for f in found["findings"]}


def test_the_rehearsal_measures_locks_and_rewrites_and_changes_nothing(
    project: Project, pg_server: Server, database: str, embedded: EmbeddedPostgres
) -> None:
    parent = pending_revisions(project, pg_server, database)
    with_type_changes(project)
    before = schema_and_rows(pg_server, database)

    shown = project.inv("db.plan", "--rehearse", "--format", "json", "--fail-on", "never")
    assert shown.code == 0, shown.output
    report = json.loads(shown.stdout)
    rehearsal = report["rehearsal"]
    assert rehearsal["schema"].startswith("the target's schema") and not rehearsal["failed"]
    assert rehearsal["server"].startswith("PostgreSQL 18")

    added = findings(report, "aaaa00000001")["adding-required-field"]
    assert (added["lock"], added["measured"], added["table"]) == ("ACCESS EXCLUSIVE", True, "book")
    index = findings(report, "aaaa00000002")["require-concurrent-index-creation"]
    assert (index["lock"], index["measured"]) == ("SHARE", True)
    dropped = findings(report, "aaaa00000003")["breaks-running-code"]
    assert (dropped["lock"], dropped["measured"]) == ("ACCESS EXCLUSIVE", True)

    # The data migration ran on the copy, through Alembic, and was not measured.
    (online,) = [r for r in report["revisions"] if r["revision"] == "aaaa00000004"]
    assert online["online_only"] and online["rehearsed"] is None

    # int to bigint widens (no break) but rewrites; varchar to text neither rewrites nor
    # breaks: inferred from the types the database had, and measured the same.
    widened = findings(report, "aaaa00000005")
    assert "breaks-running-code" not in widened
    assert (widened["rewrites-table"]["rewrite"], widened["rewrites-table"]["measured"]) == (
        True,
        True,
    )
    (statement,) = next(r for r in report["revisions"] if r["revision"] == "aaaa00000005")[
        "rehearsed"
    ]
    assert statement["rewrites"] == ["book"] and statement["locks"]["book"] == "ACCESS EXCLUSIVE"
    relabelled = findings(report, "aaaa00000006")
    assert "breaks-running-code" not in relabelled
    blocking = relabelled["blocking-lock"]
    assert (blocking["lock"], blocking["rewrite"], blocking["measured"]) == (
        "ACCESS EXCLUSIVE",
        False,
        True,
    )
    # Outside a transaction (an autocommit block): run on the copy, its lock left inferred.
    (concurrent,) = next(r for r in report["revisions"] if r["revision"] == "aaaa00000007")[
        "rehearsed"
    ]
    assert concurrent["measured"] is False and "CONCURRENTLY" in concurrent["statement"]

    # db.check on the copy after the last revision: the models know no isbn column.
    assert report["check"].startswith("fail: the models and the migrations disagree")
    assert report["check"].endswith("(on the rehearsal's copy, after the pending revisions)")
    # The environment's database: the same schema, the same rows, the same revision.
    assert schema_and_rows(pg_server, database) == before
    assert pg_server.execute("SELECT version_num FROM alembic_version", database=database) == [
        (parent,)
    ]
    # The copy is gone, and the embedded server the rehearsal started is stopped again.
    assert not embedded.status().running
    embedded.start()
    left = psql_databases(embedded)
    assert not [name for name in left if name.startswith("kubemigrate_rehearsal")], left

    text = project.inv("db.plan", "--rehearse", "--fail-on", "never")
    assert text.code == 0, text.output
    assert "ACCESS EXCLUSIVE (measured) on book (2.0 k rows" in text.stdout
    assert "those marked (measured) were taken on a rehearsal on PostgreSQL 18" in text.stdout


def psql_databases(server: EmbeddedPostgres) -> list[str]:
    import psycopg2

    connection = psycopg2.connect(server.url("postgres").replace("+psycopg2", ""))
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT datname FROM pg_database")
            return [str(row[0]) for row in cursor.fetchall()]
    finally:
        connection.close()


def test_without_a_reachable_database_the_copy_is_built_from_the_migrations(
    project: Project, pg_server: Server, database: str, embedded: EmbeddedPostgres
) -> None:
    parent = pending_revisions(project, pg_server, database)
    project.env["DATABASE_URL"] = "postgresql://nobody@127.0.0.1:9/nowhere"
    shown = project.inv(
        "db.plan", "--rehearse", "--since", parent, "--format", "json", "--fail-on", "never"
    )
    assert shown.code == 0, shown.output
    report = json.loads(shown.stdout)
    assert report["rehearsal"]["schema"] == f"the migrations from base to {parent}"
    added = findings(report, "aaaa00000001")["adding-required-field"]
    assert (added["lock"], added["measured"]) == ("ACCESS EXCLUSIVE", True)


def test_a_revision_failing_on_the_copy_is_an_error_finding(
    project: Project, pg_server: Server, database: str, embedded: EmbeddedPostgres
) -> None:
    assert project.inv("db.upgrade").code == 0
    project.add_revision(  # CONCURRENTLY without an autocommit block fails on any database
        "bad000000001",
        project.head(),
        'op.create_index("ix_t", "book", ["title"], postgresql_concurrently=True)',
    )
    shown = project.inv("db.plan", "--rehearse", "--format", "json", "--fail-on", "never")
    assert shown.code == 0, shown.output
    report = json.loads(shown.stdout)
    assert report["rehearsal"]["failed"].startswith("bad000000001: ")
    failed = findings(report, "bad000000001")["rehearsal-failed"]
    assert failed["severity"] == "error"
    assert "cannot run inside a transaction block" in failed["message"]
    assert project.inv("db.plan", "--rehearse").code == 1
    assert Path(project.root / "pgdata").is_dir()


def test_on_the_k8s_target_the_schema_is_dumped_in_the_pod(
    k8s: Project, cluster: KubeAPIServer, pg_server: Server, database: str
) -> None:
    k8s.env["KUBEMIGRATE_DATA_DIR"] = str(k8s.root / "pgdata")
    assert k8s.inv("db.upgrade", "--env", NS).code == 0
    k8s.add_revision(
        "cccc00000001", k8s.head(), 'op.add_column("user", sa.Column("nick", sa.Text()))'
    )
    before = schema_and_rows(pg_server, database)
    shown = k8s.inv("db.plan", "--rehearse", "--env", NS, "--format", "json", "--fail-on", "never")
    assert shown.code == 0, shown.output
    report = json.loads(shown.stdout)
    assert report["rehearsal"]["schema"].startswith("the target's schema")
    (statement,) = report["revisions"][0]["rehearsed"]
    assert statement["locks"] == {"user": "ACCESS EXCLUSIVE"} and statement["rewrites"] == []
    execs = [path for method, path in cluster.requests if path.split("?")[0].endswith("/exec")]
    assert execs, "pg_dump --schema-only runs in the database pod"
    assert schema_and_rows(pg_server, database) == before
    assert PASSWORD not in shown.output
    assert not EmbeddedPostgres(k8s.root / "pgdata").status().running


def test_a_trigger_function_is_rehearsed_whole_and_its_lock_measured(
    project: Project, pg_server: Server, database: str, embedded: EmbeddedPostgres
) -> None:
    assert project.inv("db.upgrade").code == 0
    project.add_revision(
        "dddd00000001",
        project.head(),
        'op.execute("""CREATE FUNCTION shout() RETURNS trigger AS $$',
        "BEGIN",
        "    NEW.title := upper(NEW.title);",
        "    RETURN NEW;",
        'END; $$ LANGUAGE plpgsql""")',
        'op.execute("CREATE TRIGGER shouting BEFORE INSERT ON book '
        'FOR EACH ROW EXECUTE FUNCTION shout()")',
    )
    shown = project.inv("db.plan", "--rehearse", "--format", "json", "--fail-on", "never")
    assert shown.code == 0, shown.output
    report = json.loads(shown.stdout)
    assert report["rehearsal"]["failed"] is None
    (revision,) = report["revisions"]
    function, trigger = revision["rehearsed"]
    assert (
        function["statement"].startswith("CREATE FUNCTION")
        and "RETURN NEW" in function["statement"]
    )
    assert trigger["locks"] == {"book": "SHARE ROW EXCLUSIVE"}
    # No rule knows CREATE TRIGGER: the measured lock is a finding of its own.
    measured = findings(report, "dddd00000001")["blocking-lock"]
    assert (measured["lock"], measured["measured"], measured["table"]) == (
        "SHARE ROW EXCLUSIVE",
        True,
        "book",
    )


def test_each_statement_shows_its_own_lock_and_apart_the_lock_already_held(
    project: Project, pg_server: Server, database: str, embedded: EmbeddedPostgres
) -> None:
    """A column added, then an index on the same table: the index's statement took SHARE
    itself, while the revision already held ACCESS EXCLUSIVE from the first statement."""
    assert project.inv("db.upgrade").code == 0
    project.add_revision(
        "held00000001",
        project.head(),
        'op.add_column("book", sa.Column("shelf", sa.Text()))',
        'op.create_index("ix_book_shelf", "book", ["shelf"])',
    )
    shown = project.inv("db.plan", "--rehearse", "--format", "json", "--fail-on", "never")
    assert shown.code == 0, shown.output
    (revision,) = json.loads(shown.stdout)["revisions"]
    added, indexed = revision["rehearsed"]
    assert added["locks"]["book"] == "ACCESS EXCLUSIVE" and added["held"] == {}
    assert indexed["locks"]["book"] == "SHARE"
    assert indexed["held"]["book"] == "ACCESS EXCLUSIVE"
    index = next(f for f in revision["findings"] if "CREATE INDEX" in f["statement"])
    assert (index["lock"], index["measured"], index["held"]) == ("SHARE", True, "ACCESS EXCLUSIVE")
    text = project.inv("db.plan", "--rehearse", "--fail-on", "never")
    assert "SHARE (measured) on book" in text.stdout
    assert "the revision already holds ACCESS EXCLUSIVE on book when it runs" in text.stdout
    assert "Running upgrade" not in text.stderr  # the offline rendering's lines: --debug only
