"""The ledger of applied migrations (`kubemigrate_history`), end to end through the real
binaries: a row per step in the step's own transaction, on the embedded server and a second
major, for this repository's env.py (in-process) and for a project's own env.py in the child
Alembic process; concurrency, failures, edits, CRLF, missing files, the baseline of a database
bare Alembic migrated, and the ledger turned off."""

from __future__ import annotations

import getpass
import hashlib
import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO, Project, Server, clean_environ
from tests.test_user_project_migrations import staging
from tests.userproject import REVISIONS, UserProject, migration

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.servers", "tests.userproject"]

FIRST = "f2030d31309f"  # the repository's first revision
COLUMNS = (
    "revision, action, checksum, started_at, finished_at, duration_ms, applied_by, host, "
    "environment, kubemigrate_version, git_commit, heads_before, heads_after, run_id, reason"
)
NAMES = [name.strip() for name in COLUMNS.split(",")]


def ledger(server: Server, database: str) -> list[dict[str, object]]:
    """The ledger's rows, oldest first (none when it is not there)."""
    found = server.execute("SELECT to_regclass('kubemigrate_history')", database=database)
    if found[0][0] is None:
        return []
    rows = server.execute(
        f"SELECT {COLUMNS} FROM kubemigrate_history ORDER BY id", database=database
    )
    return [dict(zip(NAMES, row, strict=True)) for row in rows]


def bare_alembic(project: Project, *argv: str) -> subprocess.CompletedProcess[str]:
    """`alembic ARGV` in the project, as its developers run it (DATABASE_URL set)."""
    return subprocess.run(
        [sys.executable, "-m", "alembic", *argv],
        cwd=project.root,
        env=clean_environ(**project.env, PYTHONPATH=str(REPO / "src")),
        capture_output=True,
        text=True,
        timeout=120,
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()


def first_file(project: Project) -> Path:
    (path,) = project.versions.glob("*create_user_and_book_tables.py")
    return path


def two_more(project: Project) -> tuple[str, str]:
    """Two revisions on top of the first: a quick one and one that takes 0.3 s."""
    project.add_revision("a1a1a1a1a1a1", FIRST, 'op.execute("CREATE TABLE one (id int)")')
    project.add_revision(
        "b2b2b2b2b2b2",
        "a1a1a1a1a1a1",
        'op.execute("CREATE TABLE two (id int)")',
        'op.execute("SELECT pg_sleep(0.3)")',
        downgrade=('op.execute("DROP TABLE two")',),
    )
    return "a1a1a1a1a1a1", "b2b2b2b2b2b2"


@pytest.fixture(params=[18, 15], ids=["pg18", "pg15"])
def on_major(
    request: pytest.FixtureRequest,
    project: Project,
    major_database: Callable[[int], tuple[Server, str]],
) -> tuple[Project, Server, str]:
    """The project on a fresh database of the embedded server (18) or of a second major."""
    server, name = major_database(request.param)
    project.env["DATABASE_URL"] = server.url(name)
    return project, server, name


def test_an_upgrade_writes_a_row_per_step_in_process(on_major: tuple[Project, Server, str]) -> None:
    project, server, database = on_major
    second, third = two_more(project)
    done = project.inv("db.upgrade")
    assert done.code == 0, done.output
    rows = ledger(server, database)
    assert [(r["revision"], r["action"]) for r in rows] == [
        (FIRST, "upgrade"),
        (second, "upgrade"),
        (third, "upgrade"),
    ]
    assert [(r["heads_before"], r["heads_after"]) for r in rows] == [
        ("", FIRST),
        (FIRST, second),
        (second, third),
    ]
    assert rows[0]["checksum"] == sha256(first_file(project))
    assert rows[2]["checksum"] == sha256(project.versions / f"{third}.py")
    assert 300 <= int(rows[2]["duration_ms"]) < 30000  # type: ignore[call-overload]
    for row in rows:
        assert row["started_at"] <= row["finished_at"]  # type: ignore[operator]
        assert str(row["applied_by"]).startswith(getpass.getuser())
        assert row["host"] == socket.gethostname()
        assert row["environment"] == "local"
        assert row["kubemigrate_version"]
        assert row["git_commit"] is None  # the temporary project is no git checkout
    assert len({row["run_id"] for row in rows}) == 1

    down = project.inv("db.downgrade", "-1")
    assert down.code == 0, down.output
    last = ledger(server, database)[-1]
    assert (last["revision"], last["action"]) == (third, "downgrade")
    assert (last["heads_before"], last["heads_after"]) == (third, second)
    stamped = project.inv("db.stamp", third)
    assert stamped.code == 0, stamped.output
    assert ledger(server, database)[-1]["action"] == "stamp"
    assert project.inv("db.validate").code == 0


def test_a_failing_migration_writes_no_row(
    project: Project, pg_server: Server, database: str
) -> None:
    project.add_revision("a1a1a1a1a1a1", FIRST, 'op.execute("CREATE TABLE one (id int)")')
    project.add_revision("badbadbadbad", "a1a1a1a1a1a1", 'op.execute("SELECT 1/0")')
    failed = project.inv("db.upgrade")
    assert failed.code == 1, failed.output
    rows = ledger(pg_server, database)
    assert [r["revision"] for r in rows] == [FIRST, "a1a1a1a1a1a1"]
    assert project.inv("db.validate").code == 0


def test_four_concurrent_upgrades_write_each_step_once(
    project: Project, pg_server: Server, database: str
) -> None:
    second, third = two_more(project)
    runs = [project.popen("db.upgrade") for _ in range(4)]
    outcomes = [run.communicate(timeout=180) for run in runs]
    assert all(run.returncode == 0 for run in runs), outcomes
    rows = ledger(pg_server, database)
    assert sorted(str(r["revision"]) for r in rows) == sorted([FIRST, second, third])


def test_an_edited_revision_is_named_until_repaired(
    project: Project, pg_server: Server, database: str
) -> None:
    assert project.inv("db.upgrade").code == 0
    path = first_file(project)
    original = path.read_bytes()

    path.write_bytes(original.replace(b"\n", b"\r\n"))  # a checkout with CRLF: no edit
    assert project.inv("db.validate").code == 0

    path.write_bytes(original + b"# changed after it was applied\n")
    found = project.inv("db.validate")
    assert found.code == 1
    (line,) = found.stdout.splitlines()
    assert line.startswith(f"edited: {FIRST} (create user and book tables) was applied ")
    assert getpass.getuser() in line and path.name in line
    assert f'inv db.repair {FIRST} --reason "..."' in line
    assert found.stderr.strip().splitlines()[-1].startswith("error: 1 applied revision(s)")
    report = json.loads(project.inv("db.validate", "--format", "json").stdout)
    assert report["valid"] is False and report["problems"][0]["kind"] == "edited"

    project.write_env("prod", KUBEMIGRATE_PROTECTED="true")
    refused = project.inv("db.upgrade", "--env", "prod")
    assert refused.code == 1
    assert f"edited: {FIRST}" in refused.stderr
    assert "error: prod is protected and 1 applied revision(s) do not match" in refused.stderr
    assert project.inv("db.verify").code == 1

    no_reason = project.inv("db.repair", FIRST)
    assert no_reason.code == 1 and "--reason" in no_reason.stderr
    repaired = project.inv("db.repair", FIRST[:6], "--reason", "a comment, no change in SQL")
    assert repaired.code == 0, repaired.output
    assert project.inv("db.validate").code == 0
    assert project.inv("db.upgrade", "--env", "prod").code == 0
    last = ledger(pg_server, database)[-1]
    assert (last["action"], last["reason"]) == ("repair", "a comment, no change in SQL")
    again = project.inv("db.repair", FIRST, "--reason", "twice")
    assert again.code == 1 and "nothing to repair" in again.stderr


def add_one(project: Project) -> None:
    project.add_revision(
        "a1a1a1a1a1a1",
        FIRST,
        'op.execute("CREATE TABLE one (id int)")',
        downgrade=('op.execute("DROP TABLE one")',),
    )


def test_a_missing_revision_file_is_named(
    project: Project, pg_server: Server, database: str
) -> None:
    add_one(project)
    assert project.inv("db.upgrade").code == 0
    assert project.inv("db.downgrade", "-1").code == 0
    (project.versions / "a1a1a1a1a1a1.py").unlink()
    # Downgraded, then deleted: nothing is missing.
    assert project.inv("db.validate").code == 0
    add_one(project)
    assert project.inv("db.upgrade").code == 0
    (project.versions / "a1a1a1a1a1a1.py").unlink()
    found = project.inv("db.validate")
    assert found.code == 1
    assert found.stdout.startswith("missing: a1a1a1a1a1a1 was applied "), found.output
    assert "its file is gone" in found.stdout
    assert project.inv("db.repair", "a1a1a1a1a1a1", "--reason", "squashed").code == 0
    assert project.inv("db.validate").code == 0


def test_a_database_migrated_by_bare_alembic_gets_a_baseline(
    project: Project, pg_server: Server, database: str
) -> None:
    second, _ = two_more(project)
    alembic = bare_alembic(project, "upgrade", second)
    assert alembic.returncode == 0, alembic.stderr
    assert project.inv("db.validate").stderr.startswith("No ledger in this database yet")
    assert project.inv("db.upgrade").code == 0
    rows = ledger(pg_server, database)
    assert [(r["revision"], r["action"]) for r in rows] == [
        (FIRST, "baseline"),
        (second, "baseline"),
        ("b2b2b2b2b2b2", "upgrade"),
    ]
    assert rows[0]["checksum"] == sha256(first_file(project))
    assert project.inv("db.validate").code == 0

    # A step applied by bare Alembic once the ledger exists is unknown to it.
    assert project.inv("db.downgrade", "-1").code == 0
    again = bare_alembic(project, "upgrade", "head")
    assert again.returncode == 0, again.stderr
    unknown = project.inv("db.validate")
    assert unknown.code == 1
    assert unknown.stdout.startswith("unknown: b2b2b2b2b2b2 ")
    # bare `alembic check` does not see the ledger as a table the models lack
    checked = bare_alembic(project, "check")
    assert "Detected removed table 'one'" in checked.stderr  # the comparison ran
    assert "kubemigrate_history" not in checked.stderr


def test_history_applied_and_current_verbose(
    project: Project, pg_server: Server, database: str
) -> None:
    two_more(project)
    assert project.inv("db.upgrade").code == 0
    table = project.inv("db.history", "--applied")
    assert table.code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["APPLIED", "ACTION", "REVISION", "WHO", "DURATION", "RESULT"]
    assert "b2b2b2b2b2b2" in lines[1] and lines[1].endswith("ok")
    assert len(lines) == 4
    shown = json.loads(project.inv("db.history", "--applied", "--format", "json").stdout)
    assert shown["version"] == 1
    assert [row["revision"] for row in shown["rows"]] == ["b2b2b2b2b2b2", "a1a1a1a1a1a1", FIRST]
    assert shown["rows"][0]["heads_before"] == ["a1a1a1a1a1a1"]
    current = project.inv("db.current", "--verbose")
    assert current.code == 0, current.output
    assert "Applied b2b2b2b2b2b2: " in current.stdout and getpass.getuser() in current.stdout


def test_the_ledger_turned_off(project: Project, pg_server: Server, database: str) -> None:
    project.write_env("", KUBEMIGRATE_LEDGER="false")
    assert project.inv("db.upgrade").code == 0
    assert ledger(pg_server, database) == []
    validated = project.inv("db.validate")
    assert validated.code == 0 and "the ledger is off" in validated.stderr.lower()
    repaired = project.inv("db.repair", FIRST, "--reason", "x")
    assert repaired.code == 1 and "the ledger is off" in repaired.stderr
    history = project.inv("db.history", "--applied")
    assert history.code == 1 and "the ledger is off" in history.stderr
    verified = project.inv("db.verify")
    assert verified.code == 0 and "the ledger is off" in verified.stdout


def test_a_ledger_in_another_schema(project: Project, pg_server: Server, database: str) -> None:
    pg_server.execute("CREATE SCHEMA audit AUTHORIZATION km_app", database=database)
    project.write_env("", KUBEMIGRATE_LEDGER_SCHEMA="audit")
    assert project.inv("db.upgrade").code == 0
    found = pg_server.execute("SELECT count(*) FROM audit.kubemigrate_history", database=database)
    assert found == [(1,)]
    assert project.inv("db.validate").code == 0


def test_a_user_who_cannot_create_the_ledger_is_told_how_out(
    project: Project, pg_server: Server, database: str
) -> None:
    project.write_env("", KUBEMIGRATE_LEDGER_SCHEMA="nowhere")
    failed = project.inv("db.upgrade")
    assert failed.code == 1
    (line,) = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert "cannot create the ledger table kubemigrate_history in schema nowhere" in line
    assert "KUBEMIGRATE_LEDGER=false" in line
    assert ledger(pg_server, database) == []
    tables = pg_server.execute("SELECT to_regclass('alembic_version')", database=database)
    assert tables == [(None,)], "a migration ran although the ledger could not be made"


@pytest.mark.parametrize("form", ["async", "settings"])
def test_a_projects_own_env_py_writes_the_rows_in_the_child(
    user_project: Callable[..., UserProject], pg_server: Server, database: str, form: str
) -> None:
    project = user_project(form)
    staging(project, form, pg_server.url(database))
    done = project.inv("db.upgrade", "--env", "staging")
    assert done.code == 0, done.output
    rows = ledger(pg_server, database)
    assert [(r["revision"], r["action"]) for r in rows] == [(r, "upgrade") for r in REVISIONS]
    assert [r["heads_before"] for r in rows] == ["", *REVISIONS[:-1]]
    for row in rows:
        (path,) = project.versions.glob(f"{row['revision']}_*.py")
        assert row["checksum"] == sha256(path)
        assert row["environment"] == "staging"
        assert str(row["applied_by"]).startswith(getpass.getuser())
    assert len({row["run_id"] for row in rows}) == 1

    (project.versions / "0badbadbad01_fails.py").write_text(
        migration("0badbadbad01", REVISIONS[-1], "fails", 'op.execute("SELECT 1/0")', "pass")
    )
    failed = project.inv("db.upgrade", "--env", "staging")
    assert failed.code == 1, failed.output
    assert len(ledger(pg_server, database)) == len(REVISIONS)
    (project.versions / "0badbadbad01_fails.py").unlink()

    (path,) = project.versions.glob(f"{REVISIONS[0]}_*.py")
    path.write_text(path.read_text() + "# edited\n")
    found = project.inv("db.validate", "--env", "staging")
    assert found.code == 1 and found.stdout.startswith(f"edited: {REVISIONS[0]}"), found.output
    checked = project.inv("db.check", "--env", "staging")
    assert checked.code == 0, checked.output  # the ledger is no table the models lack
