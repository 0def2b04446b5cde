"""The embedded PostgreSQL: created on first use, reused, shown and stopped by `inv dev.db`."""

from pathlib import Path

import pytest

from kubemigrate.postgres.embedded import EmbeddedPostgres
from tests.conftest import Project, run

pytestmark = pytest.mark.e2e


def test_start_reuse_stop(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "data")
    assert not server.status().running
    first = server.start()
    try:
        assert first.running and first.port
        assert server.start().pid == first.pid  # reused, not restarted
        server.ensure_database("app")
        server.ensure_database("app")  # idempotent
        assert server.url("app").endswith(f"127.0.0.1:{first.port}/app")
    finally:
        assert server.stop()
    assert not server.status().running
    assert not server.stop()


def test_tasks_use_the_embedded_server_by_default(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    project = Project(tmp_path / "project")
    project.write_env("", KUBEMIGRATE_DATA_DIR="pgdata", KUBEMIGRATE_DB_NAME="sample")
    try:
        first = project.inv("db.upgrade")
        assert first.code == 0, first.output
        assert "Embedded PostgreSQL created and started in" in first.stderr
        assert "(head)" in project.inv("db.current").stdout

        shown = project.inv("dev.db")
        assert "status:         running" in shown.stdout, shown.output
        assert "127.0.0.1:" in shown.stdout and "/sample" in shown.stdout

        stopped = project.inv("dev.db", "--stop")
        assert stopped.code == 0 and "Stopped." in stopped.stderr
        assert "stopped" in project.inv("dev.db").stdout

        again = project.inv("db.current")  # started again, data kept
        assert "(head)" in again.stdout, again.output
        assert "Embedded PostgreSQL started in" in again.stderr
    finally:
        EmbeddedPostgres(project.root / "pgdata").stop()


def test_task_list_is_quick_to_load(tmp_path: Path) -> None:
    """`inv --list` imports no database library: those load inside the tasks that use them."""
    (tmp_path / "project").mkdir()
    project = Project(tmp_path / "project")
    code = (
        "import sys, tasks; heavy = [m for m in ('sqlalchemy', 'alembic', 'sqlmodel', "
        "'psycopg2', 'dotenv', 'sh') if m in sys.modules]; print(heavy)"
    )
    result = run(["python", "-c", code], cwd=project.root, env={})
    assert result.stdout.strip() == "[]", result.output
    listing = project.inv("--list")
    assert "db.upgrade (db.migrate)" in listing.stdout and "migrate" in listing.stdout
