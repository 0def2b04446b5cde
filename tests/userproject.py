"""A second project: a FastAPI + SQLModel application that uses kubemigrate as its users do.

kubemigrate is installed from a built wheel into the project's own virtual environment, next to
the application's own dependencies (psycopg 3, pydantic-settings, sqlmodel), and the project is
laid out as the FastAPI full-stack template has it:

    tasks.py                         from kubemigrate.tasks import namespace
    .env                             the application's own database (POSTGRES_*): the decoy
    backend/alembic.ini              script_location = app/alembic (relative), models = app.models
    backend/app/core/config.py       pydantic-settings Settings, SQLALCHEMY_DATABASE_URI
    backend/app/models.py            SQLModel tables user and item (a module, not a package)
    backend/app/main.py              fails at import: kubemigrate must never import it
    backend/app/alembic/env.py       the project's own env.py, nothing from kubemigrate in it
    backend/app/alembic/versions/    three migrations: citext, user, item (REVISIONS)

The env.py comes in three forms: "settings" connects to `settings.SQLALCHEMY_DATABASE_URI` (the
decoy in `.env`), "url" to `os.environ["DATABASE_URL"]`, both with a sync engine; "async" runs
`create_async_engine` (asyncpg by default, `DATABASE_DRIVER` says otherwise) with
`connection.run_sync`. In the async form the application's settings read `DATABASE_USER`,
`DATABASE_PASSWORD`, `DATABASE_HOST`, `DATABASE_PORT` and `DATABASE_NAME`, all required and
found only in the environment (so only where KUBEMIGRATE_EXPORT sets them), `app/models.py`
builds them at import, and the last revision file imports `app.models`: a task that imports a
revision file outside the child Alembic process fails there.

Use in a test module (tests/conftest.py does not load these fixtures):

    pytest_plugins = ["tests.userproject"]

    def test_upgrade(user_project, database_url):
        project = user_project("url")
        result = project.inv("db.upgrade", DATABASE_URL=database_url)
        assert result.code == 0, result.output

Building the venv takes a while, so `user_venv` is built once per session (per xdist worker).
No password is ever put on a command line: the helpers pass them in files or the environment.

(PYTEST_DONT_REWRITE: this module asserts nothing, and test modules import it before their
`pytest_plugins` loads it, which would otherwise warn that it cannot be rewritten.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, Result, clean_environ, run

FORMS = ("url", "settings", "async")
# The application's own database, as its `.env` names it; nothing listens there.
DECOY = {
    "host": "app-db.invalid",
    "port": "5999",
    "user": "app_decoy",
    "password": "decoy p@ss:w/o%rd",
    "db": "app_decoy",
}
# The project's migrations, oldest first; the last is the head.
REVISIONS = ("0a1c17e5e001", "0a1c17e5e002", "0a1c17e5e003")
HEAD = REVISIONS[-1]
# What the user project depends on itself, besides kubemigrate.
USER_DEPENDENCIES = (
    "psycopg[binary]>=3.1",
    "asyncpg",
    "sqlalchemy[asyncio]",
    "pydantic-settings>=2",
    "sqlmodel",
)
# What the async form's settings read; KUBEMIGRATE_EXPORT for it.
ASYNC_EXPORT = (
    "DATABASE_USER={user},DATABASE_PASSWORD={password},DATABASE_HOST={host},"
    "DATABASE_PORT={port},DATABASE_NAME={database}"
)


# -- the wheel and the venv ----------------------------------------------------------------------


def uv() -> str:
    """The uv executable; the calling test is skipped when there is none."""
    found = shutil.which("uv")
    if found is None:
        pytest.skip("uv is not installed")
    return found


def build_wheel(out_dir: Path) -> Path:
    """Build kubemigrate's wheel from this repository into `out_dir`; the wheel's path."""
    subprocess.run(
        [uv(), "build", "--wheel", "--quiet", "--out-dir", str(out_dir), str(REPO)],
        check=True,
        capture_output=True,
        env=clean_environ(),
        timeout=300,
    )
    (built,) = out_dir.glob("kubemigrate-*.whl")
    return built


def make_venv(venv: Path, wheel: Path, python: str | None = None) -> Path:
    """Create the virtual environment `venv` (with interpreter `python`, by default the one
    running the tests) holding `wheel` and the user project's own dependencies; its python."""
    subprocess.run(
        [uv(), "venv", "--quiet", "--python", python or sys.executable, str(venv)],
        check=True,
        capture_output=True,
        env=clean_environ(),
        timeout=120,
    )
    venv_python = venv / "bin" / "python"
    # compiled, as `uv sync --compile-bytecode` leaves it: PYTHONDONTWRITEBYTECODE is common
    install = [uv(), "pip", "install", "--quiet", "--compile-bytecode"]
    subprocess.run(
        [*install, "--python", str(venv_python), str(wheel), *USER_DEPENDENCIES],
        check=True,
        capture_output=True,
        env=clean_environ(),
        timeout=600,
    )
    return venv_python


@pytest.fixture(scope="session")
def kubemigrate_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kubemigrate's wheel, built once per session (per xdist worker)."""
    return build_wheel(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def user_venv(tmp_path_factory: pytest.TempPathFactory, kubemigrate_wheel: Path) -> Path:
    """The python of a venv with the wheel and the user project's dependencies (shared: tests
    must not install into it)."""
    return make_venv(tmp_path_factory.mktemp("user-venv") / "venv", kubemigrate_wheel)


# -- the project ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserProject:
    """A user project at `root`, run with `python`, the python of its venv."""

    root: Path
    python: Path

    @property
    def backend(self) -> Path:
        """The directory with alembic.ini and the `app` package."""
        return self.root / "backend"

    @property
    def versions(self) -> Path:
        """The migrations directory."""
        return self.backend / "app" / "alembic" / "versions"

    def environ(self, **env: str) -> dict[str, str]:
        """The environment its commands get: clean (no KUBEMIGRATE_*, DATABASE_URL nor
        PYTHONPATH from outside) and with the venv activated, plus `env`."""
        bin_dir = str(self.python.parent)
        base = clean_environ()
        base.pop("PYTHONPATH", None)
        path = os.pathsep.join([bin_dir, base.get("PATH", "/usr/bin:/bin")])
        return {**base, "PATH": path, "VIRTUAL_ENV": str(self.python.parent.parent), **env}

    def inv(self, *argv: str, cwd: Path | None = None, **env: str) -> Result:
        """Run `python -m invoke ARGV...` in `cwd` (by default the root), `env` added."""
        return self.run("-m", "invoke", *argv, cwd=cwd, **env)

    def run(self, *argv: str, cwd: Path | None = None, **env: str) -> Result:
        """Run the venv's `python ARGV...` in `cwd` (by default the root), `env` added."""
        return run(
            [str(self.python), *argv],
            cwd=cwd or self.root,
            env=self.environ(**env),
            timeout=180,
        )

    def add_env(self, name: str = "", **values: str) -> None:
        """Add `values` to `.env` (name "", where the decoy is) or to `.env.<name>`."""
        path = self.root / (f".env.{name}" if name else ".env")
        with path.open("a") as file:
            file.write(dotenv_lines(values))


@pytest.fixture
def user_project(tmp_path: Path, user_venv: Path) -> Callable[..., UserProject]:
    """A factory: `user_project(form, decoy=DECOY)` writes a project in this test's tmp_path
    (a new directory each call) and returns it."""
    count = 0

    def make(form: str, decoy: Mapping[str, str] = DECOY) -> UserProject:
        nonlocal count
        count += 1
        root = tmp_path / f"user-project-{count}"
        write_project(root, form=form, decoy=dict(decoy))
        return UserProject(root, user_venv)

    return make


def write_project(root: Path, *, form: str, decoy: dict[str, str]) -> None:
    """Write the project at `root` (created if missing) with env.py `form` (one of FORMS) and
    the application's database parts `decoy` in `.env`."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, not {form!r}")
    backend = root / "backend"
    app = backend / "app"
    alembic = app / "alembic"
    files = {
        root / "tasks.py": TASKS,
        root / ".env": decoy_env(decoy),
        backend / "alembic.ini": ALEMBIC_INI,
        app / "__init__.py": "",
        app / "main.py": MAIN,
        app / "models.py": MODELS,
        app / "core" / "__init__.py": "",
        app / "core" / "config.py": CONFIG,
        alembic / "env.py": ENV_PY[form],
        alembic / "script.py.mako": SCRIPT_MAKO,
        **{alembic / "versions" / name: text for name, text in MIGRATIONS.items()},
    }
    if form == "async":
        files[app / "core" / "config.py"] = ASYNC_CONFIG
        files[app / "models.py"] = ASYNC_MODELS
        files[alembic / "versions" / LAST_MIGRATION] = ASYNC_LAST_MIGRATION
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def decoy_env(decoy: Mapping[str, str]) -> str:
    """The `.env` lines of the application's own database settings."""
    return dotenv_lines(
        {
            "POSTGRES_SERVER": decoy["host"],
            "POSTGRES_PORT": str(decoy["port"]),
            "POSTGRES_USER": decoy["user"],
            "POSTGRES_PASSWORD": decoy["password"],
            "POSTGRES_DB": decoy["db"],
        }
    )


def dotenv_lines(values: Mapping[str, str]) -> str:
    """`KEY='value'` lines, single-quoted as python-dotenv reads them."""
    return "".join(f"{key}={dotenv_quote(value)}\n" for key, value in values.items())


def dotenv_quote(value: str) -> str:
    """`value` single-quoted for a .env file (backslashes and quotes escaped)."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


# -- the project's files -------------------------------------------------------------------------

TASKS = "from kubemigrate.tasks import namespace\n"

ALEMBIC_INI = """\
# A generic single-database configuration, as the FastAPI template has it.

[alembic]
# Relative to the directory alembic runs in (backend/).
script_location = app/alembic
prepend_sys_path = .
# The module that defines the SQLModel tables.
models = app.models

[loggers]
keys = root,sqlalchemy,alembic

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARN
handlers = console
qualname =

[logger_sqlalchemy]
level = WARN
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
datefmt = %H:%M:%S
"""

MAIN = 'raise RuntimeError("the frontend build is missing")\n'

CONFIG = '''\
"""The application's settings, read from the repository's .env."""

from pathlib import Path
from urllib.parse import quote

from pydantic import computed_field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=Path(__file__).parents[3] / ".env",
        env_ignore_empty=True,
        extra="ignore",
    )

    POSTGRES_SERVER: str
    POSTGRES_PORT: int = 5432
    POSTGRES_USER: str
    POSTGRES_PASSWORD: str = ""
    POSTGRES_DB: str = ""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def SQLALCHEMY_DATABASE_URI(self) -> str:
        user = quote(self.POSTGRES_USER, safe="")
        password = quote(self.POSTGRES_PASSWORD, safe="")
        return (
            f"postgresql+psycopg://{user}:{password}"
            f"@{self.POSTGRES_SERVER}:{self.POSTGRES_PORT}/{self.POSTGRES_DB}"
        )


settings = Settings()
'''

MODELS = '''\
"""The application's tables."""

import uuid

from sqlmodel import Field, SQLModel


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(unique=True, max_length=255)


class Item(SQLModel, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    title: str = Field(max_length=255)
    owner_id: int = Field(foreign_key="user.id")
'''


ASYNC_CONFIG = '''\
"""The application's settings: every part of its database from the environment, required."""

from urllib.parse import quote

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    DATABASE_USER: str
    DATABASE_PASSWORD: str
    DATABASE_HOST: str
    DATABASE_PORT: int
    DATABASE_NAME: str
    DATABASE_DRIVER: str = "postgresql+asyncpg"

    @property
    def url(self) -> str:
        user = quote(self.DATABASE_USER, safe="")
        password = quote(self.DATABASE_PASSWORD, safe="")
        return (
            f"{self.DATABASE_DRIVER}://{user}:{password}"
            f"@{self.DATABASE_HOST}:{self.DATABASE_PORT}/{self.DATABASE_NAME}"
        )
'''

# The models build the settings at import, as applications that keep an engine beside them do.
ASYNC_MODELS = MODELS.replace(
    "from sqlmodel import Field, SQLModel\n",
    "from sqlmodel import Field, SQLModel\n\nfrom app.core.config import Settings\n\n"
    "settings = Settings()\nTITLE_LENGTH = 255\n",
)

ASYNC_ENV_PY = '''\
import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

from app import models

config = context.config

if config.config_file_name is not None:
    fileConfig(config.config_file_name)

target_metadata = SQLModel.metadata


def run_migrations_offline() -> None:
    """Run migrations in 'offline' mode: SQL to the script output, no Engine."""
    context.configure(
        url=models.settings.url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    """An async Engine; the migrations run through run_sync."""
    connectable = create_async_engine(models.settings.url, poolclass=NullPool)
    async with connectable.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await connectable.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_async_migrations())
'''


def env_py(imports: str, get_url: str) -> str:
    """Alembic's generic env.py with the FastAPI template's imports and URL."""
    return f'''\
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

# this is the Alembic Config object, which provides
# access to the values within the .ini file in use.
config = context.config

# Interpret the config file for Python logging.
# This line sets up loggers basically.
if config.config_file_name is not None:
    fileConfig(config.config_file_name)

{imports}
from sqlmodel import SQLModel

from app import models  # noqa: F401  (the tables)

target_metadata = SQLModel.metadata


def get_url():
    return {get_url}


def run_migrations_offline() -> None:
    """Run migrations in 'offline' mode: SQL to the script output, no Engine."""
    context.configure(
        url=get_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={{"paramstyle": "named"}},
        compare_type=True,
    )

    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run migrations in 'online' mode: an Engine and a connection."""
    connectable = create_engine(get_url(), poolclass=NullPool)

    with connectable.connect() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata, compare_type=True
        )

        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
'''


ENV_PY = {
    "async": ASYNC_ENV_PY,
    "settings": env_py(
        "from app.core.config import settings", "str(settings.SQLALCHEMY_DATABASE_URI)"
    ),
    # DATABASE_URL when set, as in Alembic's examples, else the application's own database.
    "url": env_py(
        "import os\n\nfrom app.core.config import settings",
        'os.environ.get("DATABASE_URL") or str(settings.SQLALCHEMY_DATABASE_URI)',
    ),
}

SCRIPT_MAKO = '''\
"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel
${imports if imports else ""}

# revision identifiers, used by Alembic.
revision: str = ${repr(up_revision)}
down_revision: Union[str, Sequence[str], None] = ${repr(down_revision)}
branch_labels: Union[str, Sequence[str], None] = ${repr(branch_labels)}
depends_on: Union[str, Sequence[str], None] = ${repr(depends_on)}


def upgrade() -> None:
    """Upgrade schema."""
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    """Downgrade schema."""
    ${downgrades if downgrades else "pass"}
'''


def migration(rev: str, parent: str | None, message: str, upgrade: str, downgrade: str) -> str:
    """A revision file as script.py.mako writes it; `upgrade`/`downgrade` are function bodies."""
    return f'''\
"""{message}

Revision ID: {rev}
Revises: {parent or ""}
Create Date: 2025-01-01 00:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
import sqlmodel


# revision identifiers, used by Alembic.
revision: str = {rev!r}
down_revision: Union[str, Sequence[str], None] = {parent!r}
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
{textwrap.indent(textwrap.dedent(upgrade).strip(), "    ")}


def downgrade() -> None:
    """Downgrade schema."""
{textwrap.indent(textwrap.dedent(downgrade).strip(), "    ")}
'''


MIGRATIONS = {
    f"{REVISIONS[0]}_add_citext.py": migration(
        REVISIONS[0],
        None,
        "add citext",
        'op.execute("CREATE EXTENSION IF NOT EXISTS citext")',
        'op.execute("DROP EXTENSION IF EXISTS citext")',
    ),
    f"{REVISIONS[1]}_add_user.py": migration(
        REVISIONS[1],
        REVISIONS[0],
        "add user",
        """
        op.create_table(
            "user",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("email"),
        )
        """,
        'op.drop_table("user")',
    ),
    f"{REVISIONS[2]}_add_item.py": migration(
        REVISIONS[2],
        REVISIONS[1],
        "add item",
        """
        op.create_table(
            "item",
            sa.Column("id", sa.Uuid(), nullable=False),
            sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
            sa.Column("owner_id", sa.Integer(), nullable=False),
            sa.ForeignKeyConstraint(["owner_id"], ["user.id"]),
            sa.PrimaryKeyConstraint("id"),
        )
        """,
        'op.drop_table("item")',
    ),
}

LAST_MIGRATION = f"{REVISIONS[2]}_add_item.py"
# The async form's last revision takes a length from the application's models.
ASYNC_LAST_MIGRATION = (
    MIGRATIONS[LAST_MIGRATION]
    .replace("import sqlmodel\n", "import sqlmodel\n\nfrom app.models import TITLE_LENGTH\n", 1)
    .replace(
        '"title", sqlmodel.sql.sqltypes.AutoString(length=255)',
        '"title", sqlmodel.sql.sqltypes.AutoString(length=TITLE_LENGTH)',
    )
)
