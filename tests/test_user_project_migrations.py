"""kubemigrate in a second project, laid out as FastAPI applications are (tests/userproject.py):
its own env.py of each form, run unchanged in a child Alembic process, migrates exactly the
database kubemigrate reports, and never the one the application's own settings name.

kubemigrate is installed into that project's own venv from the wheel; the tasks run from the
project's root, with alembic.ini in backend/.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from psycopg2 import sql

from tests.conftest import PASSWORD, ROLE, Server
from tests.test_plan_base import git
from tests.userproject import ASYNC_EXPORT, DECOY, FORMS, HEAD, UserProject, migration
from tests.watching import ProcessWatcher

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.userproject", "tests.servers"]

INI = "backend/alembic.ini"
# The application's settings read these: KUBEMIGRATE_EXPORT fills them from the target.
PARTS = (
    "POSTGRES_SERVER={host},POSTGRES_PORT={port},POSTGRES_USER={user},"
    "POSTGRES_PASSWORD={password},POSTGRES_DB={database}"
)
# KUBEMIGRATE_EXPORT for each form of env.py (the url form's is the default).
EXPORTS = {"settings": PARTS, "async": ASYNC_EXPORT}


def make_database(server: Server) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    server.execute(
        sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(ROLE))
    )
    return name


def tables(server: Server, database: str) -> set[str]:
    rows = server.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'", database=database
    )
    return {str(name) for (name,) in rows}


def revision_of(server: Server, database: str) -> object:
    return server.execute("SELECT version_num FROM alembic_version", database=database)[0][0]


def staging(project: UserProject, form: str, url: str, **more: str) -> None:
    """`.env.staging`: the target's URL with psycopg 3, and for an env.py that builds its URL
    from the application's settings, the parts they read."""
    values = {
        "KUBEMIGRATE_MIGRATIONS_CONFIG": INI,
        "DATABASE_URL": url.replace("postgresql://", "postgresql+psycopg://", 1),
        **({"KUBEMIGRATE_EXPORT": EXPORTS[form]} if form in EXPORTS else {}),
        **more,
    }
    project.add_env("staging", **values)


@pytest.fixture
def make_project(
    user_project: Callable[..., UserProject], pg_server: Server
) -> Iterator[Callable[[str], tuple[UserProject, str]]]:
    """`make_project(form)`: a user project whose `.env` names a real decoy database; the
    project and the decoy's name."""
    decoys: list[str] = []

    def make(form: str) -> tuple[UserProject, str]:
        name = make_database(pg_server)
        decoys.append(name)
        parts = {"host": "127.0.0.1", "port": str(pg_server.port), "user": ROLE}
        return user_project(form, decoy={**parts, "password": PASSWORD, "db": name}), name

    yield make
    for name in decoys:
        pg_server.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def every_task(project: UserProject, inv: Callable[..., str]) -> None:
    """upgrade (offline, then online), current, check, revision, plan (--base, --rehearse),
    downgrade, history, backup, restore and verify, as a user runs them after changing a model;
    `inv(*argv, expect=0)` runs one task and returns its output."""
    assert "CREATE EXTENSION IF NOT EXISTS citext" in inv("db.upgrade", "--sql")
    assert inv("db.current").strip() == ""  # offline: nothing was applied
    inv("db.upgrade")
    assert f"{HEAD} (head)" in inv("db.current")
    inv("db.check")
    models = project.backend / "app" / "models.py"
    models.write_text(
        models.read_text().replace(
            "    email: str", "    is_active: bool = True\n    email: str", 1
        )
    )
    inv("db.check", expect=1)
    for command in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-q", "-m", "base")):
        git(project.root, *command)
    inv("db.revision", "add user.is_active")
    (written,) = project.versions.glob("*add_user_is_active.py")
    assert "server_default='true'" in written.read_text()
    # The pull request's plan: only the new revision, its lock measured on a copy.
    report = json.loads(
        inv("db.plan", "--base", "main", "--rehearse", "--format", "json", "--fail-on", "never")
    )
    (planned,) = report["revisions"]
    assert planned["revision"] in written.name and report["from"] == HEAD
    assert report["rehearsal"]["schema"].startswith("the target's schema")
    assert report["check"].startswith("ok: the models and the migrations agree (on the rehearsal")
    on_user = [f for f in planned["findings"] if f["table"] == "user"]
    assert on_user and all(f["lock"] == "ACCESS EXCLUSIVE" and f["measured"] for f in on_user)
    inv("db.upgrade")
    inv("db.downgrade", "-1")
    assert inv("db.current").strip() == HEAD
    inv("db.upgrade")
    assert HEAD in inv("db.history")
    dump = inv("db.backup").strip().splitlines()[-1]
    inv("db.restore", dump, "--yes")
    inv("db.verify")
    assert (project.root / "backups" / ".gitignore").read_text().endswith("*\n")


@pytest.mark.parametrize("form", FORMS)
def test_every_task_on_a_second_server(
    make_project: Callable[[str], tuple[UserProject, str]],
    pg_server: Server,
    database: str,
    form: str,
) -> None:
    project, decoy_db = make_project(form)
    staging(project, form, pg_server.url(database))
    outputs = []

    def inv(*argv: str, expect: int = 0) -> str:
        result = project.inv(*argv, "--env", "staging")
        outputs.append(result.output)
        assert result.code == expect, result.output
        return result.stdout

    with ProcessWatcher(PASSWORD) as watcher:
        every_task(project, inv)
    assert watcher.leaks == []
    assert b"kubemigrate.migrations.isolated_main" in watcher.holders
    for output in outputs:
        assert PASSWORD not in output
    assert revision_of(pg_server, database) != HEAD  # the new revision, on the target
    assert tables(pg_server, decoy_db) == set()  # the application's own database: untouched


@pytest.mark.parametrize("form", FORMS)
def test_every_task_on_the_embedded_server(
    user_project: Callable[..., UserProject], form: str
) -> None:
    project = user_project(form)  # the decoy: a host that does not resolve
    project.add_env(
        "",
        KUBEMIGRATE_MIGRATIONS_CONFIG=INI,
        KUBEMIGRATE_DRIVER="postgresql+psycopg",
        **({"KUBEMIGRATE_EXPORT": EXPORTS[form]} if form in EXPORTS else {}),
    )

    def inv(*argv: str, expect: int = 0) -> str:
        result = project.inv(*argv)
        assert result.code == expect, result.output
        return result.stdout

    try:
        every_task(project, inv)
        assert (project.root / ".kubemigrate" / ".gitignore").is_file()
    finally:
        project.inv("dev.db", "--stop")


def test_tasks_py_beside_alembic_ini(
    user_project: Callable[..., UserProject], pg_server: Server, database: str
) -> None:
    """tasks.py in backend/, run from there: alembic.ini is found without a setting."""
    project = user_project("url")
    (project.root / "tasks.py").rename(project.backend / "tasks.py")
    url = pg_server.url(database).replace("postgresql://", "postgresql+psycopg://", 1)
    upgraded = project.inv("db.upgrade", cwd=project.backend, DATABASE_URL=url)
    assert upgraded.code == 0, upgraded.output
    assert revision_of(pg_server, database) == HEAD
    shown = project.inv("db.current", cwd=project.backend, DATABASE_URL=url)
    assert f"{HEAD} (head)" in shown.stdout


def test_a_settings_env_py_without_the_parts_is_stopped_before_the_decoy(
    make_project: Callable[[str], tuple[UserProject, str]], pg_server: Server, database: str
) -> None:
    project, decoy_db = make_project("settings")
    staging(project, "url", pg_server.url(database))  # the default export: DATABASE_URL only
    refused = project.inv("db.upgrade", "--env", "staging")
    assert refused.code == 1, refused.output
    (line,) = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert "backend/app/alembic/env.py connected to 127.0.0.1" in line
    assert f"/{decoy_db} as {ROLE}, not to the database kubemigrate resolved" in line
    assert f"/{database} as {ROLE}" in line and "KUBEMIGRATE_EXPORT" in line
    assert "nothing was migrated" in line and PASSWORD not in refused.output
    assert tables(pg_server, decoy_db) == set()
    assert tables(pg_server, database) == set()


def test_a_url_env_py_given_another_variable_is_stopped_before_the_decoy(
    make_project: Callable[[str], tuple[UserProject, str]], pg_server: Server, database: str
) -> None:
    project, decoy_db = make_project("url")
    staging(project, "url", pg_server.url(database), KUBEMIGRATE_EXPORT="APP_DATABASE_URL={url}")
    refused = project.inv("db.upgrade", "--env", "staging")
    assert refused.code == 1, refused.output
    assert "not to the database kubemigrate resolved" in refused.stderr
    assert tables(pg_server, decoy_db) == set()
    assert tables(pg_server, database) == set()


def test_an_exception_in_the_models_is_one_line(
    make_project: Callable[[str], tuple[UserProject, str]], pg_server: Server, database: str
) -> None:
    project, _ = make_project("settings")
    staging(project, "settings", pg_server.url(database))
    models = project.backend / "app" / "models.py"
    models.write_text(models.read_text() + '\nraise ValueError("a broken model")\n')
    line_number = len(models.read_text().splitlines())
    failed = project.inv("db.upgrade", "--env", "staging")
    assert failed.code == 1, failed.output
    assert "Traceback" not in failed.output
    assert f"error: backend/app/models.py:{line_number}: ValueError: a broken model" in (
        failed.stderr
    )
    shown = project.inv("db.upgrade", "--env", "staging", KUBEMIGRATE_TRACEBACK="true")
    assert "Traceback (most recent call last)" in shown.stderr
    assert tables(pg_server, database) == set()


def test_an_env_py_that_cannot_connect_says_so(
    user_project: Callable[..., UserProject], pg_server: Server, database: str
) -> None:
    project = user_project("settings", decoy={**DECOY, "host": "127.0.0.1", "port": "9"})
    staging(project, "url", pg_server.url(database))
    failed = project.inv("db.upgrade", "--env", "staging")
    assert failed.code == 1, failed.output
    assert "backend/app/alembic/env.py cannot connect to its database" in failed.stderr
    assert "refused a migration statement" not in failed.stderr
    assert "Traceback" not in failed.output


def test_an_invalid_application_setting_is_one_line(
    user_project: Callable[..., UserProject], pg_server: Server, database: str
) -> None:
    project = user_project("settings", decoy={**DECOY, "port": "not-a-port"})
    staging(project, "url", pg_server.url(database))
    failed = project.inv("db.upgrade", "--env", "staging")
    assert failed.code == 1, failed.output
    assert "error: backend/app/core/config.py:" in failed.stderr
    assert "ValidationError" in failed.stderr and "Traceback" not in failed.output
    assert DECOY["password"] not in failed.output


@pytest.mark.parametrize("major", [18, 15], ids=["pg18", "pg15"])
def test_every_other_task_in_export_mode(
    user_project: Callable[..., UserProject],
    major_database: Callable[[int], tuple[Server, str]],
    major: int,
) -> None:
    """The async project, whose last revision imports the application, whose settings exist
    only in the child's environment: the tasks that read the revision graph (heads, show,
    history, current --verbose, merge, revision, stamp, lint, plan, verify, the release) read
    it without importing a revision file, or run Alembic in the child."""
    server, database = major_database(major)
    project = user_project("async")
    staging(project, "async", server.url(database))
    outputs = []

    def inv(*argv: str, expect: int = 0) -> str:
        result = project.inv(*argv, KUBEMIGRATE_ENV="staging")  # every task of a chain
        outputs.append(result.output)
        assert result.code == expect, result.output
        assert "Traceback" not in result.output
        return result.stdout

    def add(rev: str, parent: str) -> None:
        path = project.versions / f"{rev}_more.py"
        path.write_text(migration(rev, parent, f"more {rev}", "pass", "pass"))

    with ProcessWatcher(PASSWORD) as watcher:
        assert inv("db.heads").split()[0] == HEAD
        assert f"Rev: {HEAD} (head)" in inv("db.show", HEAD)
        assert "add item" in inv("db.history", "--verbose")
        inv("db.upgrade")
        assert f"Rev: {HEAD} (head)" in inv("db.current", "--verbose")
        wrote = inv("db.revision", "empty", "--no-autogenerate")
        (written,) = [Path(line.split()[1]) for line in wrote.splitlines() if "Review" in line]
        assert written.is_file()
        add("b1b1b1b1b1b1", HEAD)  # a second head beside the empty revision
        assert "b1b1b1b1b1b1" in inv("db.heads")
        inv("db.merge", "-m", "join")
        assert len(inv("db.heads").split("\n")) == 2  # one head, and the trailing newline
        assert "3 revision(s)" in inv("db.plan", "--fail-on", "never")
        inv("db.lint")
        inv("backup", "migrate", "verify")
        inv("db.stamp", HEAD)
        assert inv("db.current").split()[0] == HEAD
        inv("db.upgrade")
        assert "no pending migrations" in inv("release", "--dry-run")
    assert watcher.leaks == []
    for output in outputs:
        assert PASSWORD not in output
