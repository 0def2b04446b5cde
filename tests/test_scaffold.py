"""`kubemigrate.migrations.scaffold.init`, the files of `inv db.init`: what it writes, that Alembic
loads them, that it never overwrites, and (end to end) that a fresh project autogenerates and
applies its first migration with the bare `alembic` command."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from kubemigrate.errors import SettingsError
from kubemigrate.migrations import scaffold
from kubemigrate.migrations.scaffold import init
from tests.conftest import REPO, Server, clean_environ

FILES = [
    "alembic.ini",
    "migrations/env.py",
    "migrations/script.py.mako",
    "migrations/versions/.gitkeep",
    ".env.example",
]

ITEM_MODEL = """\
from sqlmodel import Field, SQLModel


class Item(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=80)
"""


def tree(root: Path) -> list[str]:
    """Every file under `root`, relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_writes_the_files(tmp_path: Path) -> None:
    written = init(tmp_path, models="shop.models")
    assert written == [tmp_path / name for name in FILES]
    assert tree(tmp_path) == sorted(FILES)
    for path in written:
        text = path.read_text(encoding="utf-8")
        assert text == "" or text.endswith("\n"), path
    migrations = tmp_path / "migrations"
    assert (migrations / "script.py.mako").read_text() == (
        REPO / "migrations" / "script.py.mako"
    ).read_text()
    env = (migrations / "env.py").read_text()
    assert 'config.attributes.get("connection")' in env
    assert "discover(models())" in env and 'get_main_option("models")' in env
    assert '"transaction_per_migration": True' in env and '"compare_type": True' in env
    assert "models = shop.models\n" in (tmp_path / "alembic.ini").read_text()


def test_env_example_is_the_repositorys(tmp_path: Path) -> None:
    init(tmp_path)
    assert (tmp_path / ".env.example").read_text() == (REPO / ".env.example").read_text()


@pytest.mark.parametrize("directory", ["migrations", "db/migrations"])
def test_alembic_loads_what_it_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, directory: str
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # ScriptDirectory prepends "."
    init(tmp_path, models="shop.models", directory=directory)
    config = Config(str(tmp_path / "alembic.ini"))
    script = ScriptDirectory.from_config(config)
    assert Path(script.dir) == tmp_path / directory
    assert Path(script.env_py_location).is_file()
    assert script.get_heads() == []
    assert script.truncate_slug_length == 40
    assert script.timezone == "UTC"
    assert config.get_main_option("models") == "shop.models"
    assert config.get_prepend_sys_paths_list() == ["."]


def test_ruff_hooks_when_ruff_is_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scaffold, "find_spec", lambda name: object())
    init(tmp_path)
    hooks = Config(str(tmp_path / "alembic.ini")).get_section("post_write_hooks") or {}
    assert hooks["hooks"] == "ruff_fix, ruff_format"
    assert hooks["ruff_fix.type"] == hooks["ruff_format.type"] == "module"
    assert hooks["ruff_fix.options"] == "check --fix --quiet REVISION_SCRIPT_FILENAME"
    assert hooks["ruff_format.options"] == "format --quiet REVISION_SCRIPT_FILENAME"


def test_hooks_commented_out_without_ruff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scaffold, "find_spec", lambda name: None)
    init(tmp_path)
    text = (tmp_path / "alembic.ini").read_text()
    assert "# Install ruff" in text
    assert "\n# hooks = ruff_fix, ruff_format\n" in text
    hooks = Config(str(tmp_path / "alembic.ini")).get_section("post_write_hooks") or {}
    assert "hooks" not in hooks and "ruff_fix.type" not in hooks


@pytest.mark.parametrize(
    ("existing", "named"),
    [
        ("alembic.ini", "alembic.ini already exists"),
        (".env.example", ".env.example already exists"),
        ("migrations/README", "migrations/ already exists and is not empty"),
    ],
)
def test_refuses_to_overwrite_and_writes_nothing(tmp_path: Path, existing: str, named: str) -> None:
    (tmp_path / existing).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / existing).write_text("mine\n")
    with pytest.raises(SettingsError) as info:
        init(tmp_path)
    message = str(info.value)
    assert message.startswith(named) and "nothing was written" in message
    assert "\n" not in message
    assert tree(tmp_path) == [existing]
    assert (tmp_path / existing).read_text() == "mine\n"


def test_an_empty_migrations_directory_is_filled(tmp_path: Path) -> None:
    (tmp_path / "migrations").mkdir()
    assert len(init(tmp_path)) == len(FILES)


@pytest.mark.parametrize(
    ("models", "directory", "pattern"),
    [
        ("shop models", "migrations", "not a module or package name"),
        ("", "migrations", "not a module or package name"),
        ("app.models", "/abs/migrations", "inside the project"),
        ("app.models", "../migrations", "inside the project"),
        ("app.models", "", "inside the project"),
    ],
)
def test_refuses_bad_names(tmp_path: Path, models: str, directory: str, pattern: str) -> None:
    with pytest.raises(SettingsError, match=pattern):
        init(tmp_path, models=models, directory=directory)
    assert tree(tmp_path) == []


def module(
    project: Path, database_url: str, name: str, *argv: str
) -> subprocess.CompletedProcess[str]:
    """Run `python -m NAME ARGV` in `project`, with DATABASE_URL and nothing else of ours."""
    return subprocess.run(
        [sys.executable, "-m", name, *argv],
        cwd=project,
        env=clean_environ(DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=180,
    )


def alembic(project: Path, database_url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """The bare `alembic` command in `project`."""
    return module(project, database_url, "alembic", *argv)


@pytest.mark.e2e
def test_a_new_project_autogenerates_and_applies_its_first_migration(
    tmp_path: Path, pg_server: Server, database: str, database_url: str
) -> None:
    entities = tmp_path / "shop" / "entities"
    entities.mkdir(parents=True)
    (tmp_path / "shop" / "__init__.py").write_text("")
    (entities / "__init__.py").write_text("")
    (entities / "item.py").write_text(ITEM_MODEL)
    init(tmp_path, models="shop.entities")

    made = alembic(
        tmp_path, database_url, "-c", "alembic.ini", "revision", "--autogenerate", "-m", "first"
    )
    assert made.returncode == 0, made.stdout + made.stderr
    (revision,) = (tmp_path / "migrations" / "versions").glob("*.py")
    assert re.fullmatch(r"\d{8}_\d{4}_first\.py", revision.name), revision.name
    text = revision.read_text()
    assert "op.create_table" in text and "item" in text, text

    applied = alembic(tmp_path, database_url, "upgrade", "head")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    columns = pg_server.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'item' "
        "ORDER BY ordinal_position",
        database=database,
    )
    assert columns == [("id",), ("name",)]
    current = alembic(tmp_path, database_url, "current")
    assert "(head)" in current.stdout, current.stdout + current.stderr


@pytest.mark.e2e
def test_inv_db_init_then_revision_and_upgrade(
    tmp_path: Path, pg_server: Server, database: str, database_url: str
) -> None:
    """A project with a models module and a one-line tasks.py: `inv db.init` and then the
    tasks a user runs next, on a real database."""
    (tmp_path / "tasks.py").write_text("from kubemigrate.tasks import namespace\n")
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "models.py").write_text(ITEM_MODEL)
    (tmp_path / "shop" / "main.py").write_text('raise RuntimeError("not for migrations")\n')

    def inv(*argv: str) -> subprocess.CompletedProcess[str]:
        return module(tmp_path, database_url, "invoke", *argv)

    made = inv("db.init", "--models", "shop.models")
    assert made.returncode == 0, made.stderr
    assert "wrote alembic.ini" in made.stderr and "wrote migrations/env.py" in made.stderr
    again = inv("db.init", "--models", "shop.models")
    assert again.returncode == 1 and "nothing was written" in again.stderr
    assert "Traceback" not in again.stderr
    first = inv("db.revision", "first tables")
    assert first.returncode == 0, first.stderr
    (written,) = (tmp_path / "migrations" / "versions").glob("*_first_tables.py")
    assert re.match(r"\d{8}_\d{4}_first_tables\.py", written.name)
    upgraded = inv("db.upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "(head)" in inv("db.current").stdout
    rows = pg_server.execute("SELECT to_regclass('item')", database=database)
    assert rows[0][0] == "item"


@pytest.mark.parametrize("name", ["env.py", "script.py.mako"])
def test_this_repository_uses_what_db_init_writes(name: str) -> None:
    """The working example's migrations/ is what `inv db.init` gives a new project."""
    template = Path(scaffold.__file__).parent / "templates" / name
    assert (REPO / "migrations" / name).read_text() == template.read_text()
