"""The pieces behind a project's own env.py, without a database: KUBEMIGRATE_EXPORT, the layout
read from alembic.ini, the check of where env.py connected, one-line project errors, model
discovery and the directories kubemigrate keeps out of git."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from kubemigrate.errors import ProjectError, SettingsError
from kubemigrate.files import create_ignored
from kubemigrate.migrations.isolated_main import same_database
from kubemigrate.migrations.layout import Layout, resolve_sys_path
from kubemigrate.postgres.exports import render
from kubemigrate.postgres.urls import parse_url, url_from_parts
from kubemigrate.settings.kinds import parse_exports
from kubemigrate.settings.sources import load_settings

SECRET = "p@ss:w/o%rd 'q\" #x"


def test_exports_default_and_parts() -> None:
    assert parse_exports("DATABASE_URL={url}") == (("DATABASE_URL", "{url}"),)
    url = url_from_parts(host="db", port=6543, user="ann", password=SECRET, database="shop")
    parts = parse_exports(
        "POSTGRES_SERVER={host}, POSTGRES_PORT={port},PW={password},DB={database}"
    )
    assert render(parts, url, None) == {
        "POSTGRES_SERVER": "db",
        "POSTGRES_PORT": "6543",
        "PW": SECRET,
        "DB": "shop",
    }


def test_exported_url_keeps_the_named_driver_else_the_setting() -> None:
    exports = parse_exports("DATABASE_URL={url}")
    named = parse_url("postgresql+psycopg://ann:x@db/shop", "a test")
    assert render(exports, named, "postgresql+pg8000")["DATABASE_URL"].startswith(
        "postgresql+psycopg://"
    )
    bare = parse_url("postgresql://ann:x@db/shop", "a test")
    assert render(exports, bare, None)["DATABASE_URL"].startswith("postgresql+psycopg2://")
    assert render(exports, bare, "postgresql+psycopg")["DATABASE_URL"].startswith(
        "postgresql+psycopg://"
    )
    quoted = url_from_parts(host="db", port=5432, user="ann", password=SECRET, database="shop")
    from sqlalchemy.engine import make_url

    assert make_url(render(exports, quoted, None)["DATABASE_URL"]).password == SECRET


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("DATABASE_URL", "NAME=TEMPLATE"),
        ("1X={url}", "NAME=TEMPLATE"),
        ("X={secret}", "names {secret}"),
        ("X={url!r}", "names {url}"),
        (" , ", "at least one"),
    ],
)
def test_a_malformed_export_is_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_exports(text)


def test_a_malformed_export_setting_names_it(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="KUBEMIGRATE_EXPORT"):
        load_settings(project_dir=tmp_path, environ={"KUBEMIGRATE_EXPORT": "X={nope}"})


def where(host: str, port: str = "5432", dbname: str = "app", user: str = "ann") -> dict[str, str]:
    return {"host": host, "port": port, "dbname": dbname, "user": user}


def test_same_database() -> None:
    assert same_database(where("localhost"), where("127.0.0.1"))
    assert same_database(where("DB.example"), where("db.example"))
    assert same_database(where("/run/postgresql/"), where("/run/postgresql"))
    assert not same_database(where("127.0.0.1", port="5433"), where("127.0.0.1"))
    assert not same_database(where("127.0.0.1", dbname="app_dev"), where("127.0.0.1"))
    assert not same_database(where("127.0.0.1", user="postgres"), where("127.0.0.1"))
    assert not same_database(where("db.example"), where("127.0.0.1"))


def test_a_project_error_names_the_project_file_and_hides_the_password(tmp_path: Path) -> None:
    source = tmp_path / "app" / "settings.py"
    source.parent.mkdir()
    source.write_text("def load(secret):\n    raise ValueError(f'cannot parse {secret} here')\n")
    spec = importlib.util.spec_from_file_location("settings_under_test", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        module.load(SECRET)
    except ValueError as exc:
        error = ProjectError.from_exception(exc, tmp_path, [SECRET])
    assert str(error).startswith("app/settings.py:2: ValueError: cannot parse *** here")
    assert SECRET not in str(error) and "\n" not in str(error)


def write_ini(directory: Path, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    ini = directory / "alembic.ini"
    ini.write_text("[alembic]\n" + body)
    return ini


def test_script_location_is_resolved_against_the_ini(tmp_path: Path) -> None:
    ini = write_ini(tmp_path / "backend", "script_location = app/alembic\nprepend_sys_path = .\n")
    found = Layout.read(ini)
    assert found.script_location == tmp_path / "backend" / "app" / "alembic"
    assert found.versions == tmp_path / "backend" / "app" / "alembic" / "versions"
    assert resolve_sys_path(found) == [str(tmp_path / "backend")]
    here = write_ini(tmp_path / "x", "script_location = %(here)s/migrations\n")
    assert Layout.read(here).script_location == tmp_path / "x" / "migrations"
    resource = write_ini(tmp_path / "y", "script_location = myapp:migrations\n")
    assert Layout.read(resource).script_location is None


def test_which_env_py_takes_the_connection(tmp_path: Path) -> None:
    ini = write_ini(tmp_path, "script_location = migrations\n")
    (tmp_path / "migrations").mkdir()
    env_py = tmp_path / "migrations" / "env.py"
    env_py.write_text('connectable = config.attributes.get("connection", None)\n')
    assert Layout.read(ini).takes_connection()
    env_py.write_text("connection = config.attributes['connection']\n")
    assert Layout.read(ini).takes_connection()
    env_py.write_text('engine = create_engine(os.environ["DATABASE_URL"])\n')
    assert not Layout.read(ini).takes_connection()


def test_a_missing_ini_says_which_setting(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="KUBEMIGRATE_MIGRATIONS_CONFIG"):
        Layout.read(tmp_path / "backend" / "alembic.ini")


def test_created_directories_are_kept_out_of_git(tmp_path: Path) -> None:
    create_ignored(tmp_path / ".kubemigrate")
    assert (tmp_path / ".kubemigrate" / ".gitignore").read_text().endswith("*\n")
    create_ignored(tmp_path / "backups" / "staging")
    assert (tmp_path / "backups" / ".gitignore").is_file()
    assert not (tmp_path / "backups" / "staging" / ".gitignore").exists()
    existing = tmp_path / "mine"
    existing.mkdir()
    create_ignored(existing)
    assert not (existing / ".gitignore").exists()


def test_discover_imports_a_module_alone(tmp_path: Path) -> None:
    """`models = shop.models` imports that module, never the package's other modules."""
    package = tmp_path / "shop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "main.py").write_text('raise RuntimeError("the frontend build is missing")\n')
    (package / "models.py").write_text(
        "from sqlmodel import Field, SQLModel\n\n\n"
        "class Widget(SQLModel, table=True):\n    id: int | None = Field(default=None, "
        "primary_key=True)\n"
    )
    entities = package / "entities"
    entities.mkdir()
    (entities / "__init__.py").write_text("")
    (entities / "part.py").write_text(
        "from sqlmodel import Field, SQLModel\n\n\n"
        "class Part(SQLModel, table=True):\n    id: int | None = Field(default=None, "
        "primary_key=True)\n"
    )
    script = (
        "from kubemigrate.models import discover\n"
        "assert 'widget' in discover('shop.models').tables\n"
        "import sys; assert 'shop.main' not in sys.modules\n"
        "assert 'part' in discover('shop.entities').tables\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
