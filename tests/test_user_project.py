"""The second project fixture itself (tests/userproject.py): a FastAPI + SQLModel application
with kubemigrate installed from the wheel into its own venv. A smoke test only; the migration
tests build on it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.userproject import (
    DECOY,
    FORMS,
    HEAD,
    REVISIONS,
    UserProject,
)

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.userproject"]


@pytest.mark.parametrize("form", FORMS)
def test_a_user_project_lists_the_tasks(
    user_project: Callable[..., UserProject], form: str
) -> None:
    project = user_project(form)
    listed = project.inv("--list")
    assert listed.code == 0, listed.output
    assert "db.upgrade" in listed.stdout


def test_the_venv_has_no_app_but_the_project_has(
    user_project: Callable[..., UserProject], tmp_path: Path
) -> None:
    project = user_project("settings")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    no_app = project.run("-c", "import app", cwd=outside)
    assert no_app.code != 0, "the wheel installed a top-level app package"
    models = project.run("-c", "import app.models", cwd=project.backend)
    assert models.code == 0, models.output


def test_the_application_reads_its_own_database_from_dotenv(
    user_project: Callable[..., UserProject],
) -> None:
    project = user_project("settings")
    expected = (
        "postgresql+psycopg://app_decoy:decoy%20p%40ss%3Aw%2Fo%25rd"
        f"@{DECOY['host']}:{DECOY['port']}/{DECOY['db']}"
    )
    check = "import os; from app.core.config import settings as s; " + (
        "assert s.SQLALCHEMY_DATABASE_URI == os.environ['EXPECTED'], 'another URL'"
    )
    read = project.run("-c", check, cwd=project.backend, EXPECTED=expected)
    assert read.code == 0, read.output


@pytest.mark.parametrize("form", FORMS)
def test_its_own_alembic_writes_the_migrations_offline(
    user_project: Callable[..., UserProject], form: str
) -> None:
    """The project's env.py and migrations work with plain Alembic (no kubemigrate)."""
    project = user_project(form)
    url = "postgresql+psycopg://nobody@offline.invalid/none"
    parts = {"USER": "nobody", "PASSWORD": "", "HOST": "offline.invalid", "PORT": "5432"}
    env = {"DATABASE_URL": url, **{f"DATABASE_{k}": v for k, v in parts.items()}}
    sql = project.run(
        "-m",
        "alembic",
        "upgrade",
        "head",
        "--sql",
        cwd=project.backend,
        DATABASE_NAME="none",
        **env,
    )
    assert sql.code == 0, sql.output
    assert "CREATE EXTENSION IF NOT EXISTS citext" in sql.stdout
    assert 'CREATE TABLE "user"' in sql.stdout and "CREATE TABLE item" in sql.stdout
    assert f"version_num='{HEAD}'" in sql.stdout
    assert sorted(path.name[:12] for path in project.versions.glob("*.py")) == list(REVISIONS)


def test_the_async_forms_revisions_need_the_applications_settings(
    user_project: Callable[..., UserProject],
) -> None:
    """What makes the async form a test of the export mode: plain Alembic cannot even list its
    revisions without the variables only the migration run has."""
    project = user_project("async")
    listed = project.run("-m", "alembic", "history", cwd=project.backend)
    assert listed.code != 0 and "DATABASE_USER" in listed.output, listed.output
