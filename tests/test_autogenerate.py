"""Model changes: discovery without an import list, `db.check`, and `db.revision` writing a
migration that imports and runs. The project copy carries its own models package so the
test can change models freely."""

import shutil

import pytest

from tests.conftest import REPO, Project, Server

pytestmark = pytest.mark.e2e

TAG_MODEL = """\
from sqlmodel import Field, SQLModel


class Tag(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    label: str = Field(max_length=50)
"""


@pytest.fixture
def models_project(project: Project) -> Project:
    shutil.copytree(
        REPO / "src" / "app", project.root / "testapp", ignore=shutil.ignore_patterns("__pycache__")
    )
    ini = project.root / "alembic.ini"
    ini.write_text(ini.read_text().replace("models = app.entities", "models = testapp.entities"))
    return project


def test_check_and_revision_for_a_new_column(
    models_project: Project, pg_server: Server, database: str
) -> None:
    project = models_project
    assert project.inv("db.upgrade").code == 0
    ok = project.inv("db.check")
    assert ok.code == 0 and "agree" in ok.stdout, ok.output

    user_models = project.root / "testapp" / "entities" / "user" / "models.py"
    user_models.write_text(
        user_models.read_text().replace(
            "    created_at: datetime",
            "    is_active: bool = Field(default=True)\n    created_at: datetime",
        )
    )
    check = project.inv("db.check")
    assert check.code == 1, check.output
    assert "disagree" in check.stderr and "is_active" in check.stderr, check.output
    assert "Traceback" not in check.output

    made = project.inv("db.revision", "add user.is_active")
    assert made.code == 0, made.output
    (script,) = project.versions.glob("*_add_user_is_active.py")
    text = script.read_text()
    assert "op.add_column" in text and "is_active" in text
    assert "sqlmodel." not in text or "import sqlmodel" in text

    assert project.inv("db.upgrade").code == 0
    columns = pg_server.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'user'",
        database=database,
    )
    assert ("is_active",) in columns
    assert project.inv("db.check").code == 0
    assert project.inv("db.downgrade", "-1").code == 0


def test_new_entity_is_discovered(models_project: Project) -> None:
    project = models_project
    tag = project.root / "testapp" / "entities" / "tag"
    tag.mkdir()
    (tag / "__init__.py").write_text("")
    (tag / "models.py").write_text(TAG_MODEL)
    assert project.inv("db.upgrade").code == 0
    check = project.inv("db.check")
    assert check.code == 1 and "tag" in check.stderr, check.output
    made = project.inv("db.revision", "add tag")
    assert made.code == 0, made.output
    (script,) = project.versions.glob("*_add_tag.py")
    assert "create_table" in script.read_text()
    assert project.inv("db.upgrade").code == 0
    assert project.inv("db.check").code == 0
