"""Every driver a project's env.py uses, sync or async: kubemigrate's promises hold on each.

The second project (tests/userproject.py) runs its own env.py in the child Alembic process:
psycopg2 and psycopg 3 with a sync engine (the "url" form, the driver named by
KUBEMIGRATE_DRIVER), psycopg 3 and asyncpg with `create_async_engine` and `run_sync` (the
"async" form, the driver named by the application's own DATABASE_DRIVER). On each:

- the migration session has kubemigrate's settings (lock_timeout, statement_timeout,
  client_connection_check_interval), set with SQL on env.py's own connection: a revision
  records them, with the advisory lock the parent holds and its own transaction;
- a migration behind a busy table stops at lock_timeout, with the one-line hint;
- Ctrl-C and SIGTERM roll the running migration back, and leave no process behind;
- a tunnel that dies mid-migration is reported as such, and the migration rolls back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg2
import pytest

from tests.conftest import (
    NS,
    PASSWORD,
    Result,
    Server,
    interrupt_at,
    kubectl_processes,
    run,
)
from tests.userproject import ASYNC_EXPORT, HEAD, UserProject, migration

if TYPE_CHECKING:
    from tests.kubeapi.api import KubeAPIServer

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.userproject"]

INI = "backend/alembic.ini"
# name: (env.py form, the variables that choose the driver)
DRIVERS = {
    "psycopg2": ("url", {"KUBEMIGRATE_DRIVER": "postgresql+psycopg2"}),
    "psycopg": ("url", {"KUBEMIGRATE_DRIVER": "postgresql+psycopg"}),
    "psycopg-async": (
        "async",
        {"KUBEMIGRATE_EXPORT": ASYNC_EXPORT, "DATABASE_DRIVER": "postgresql+psycopg"},
    ),
    "asyncpg": (
        "async",
        {"KUBEMIGRATE_EXPORT": ASYNC_EXPORT, "DATABASE_DRIVER": "postgresql+asyncpg"},
    ),
}
RECORDER, SECOND, SLOW = "5e5510a00001", "5e5510a00002", "5e5510a0051d"

RECORD = (
    "INSERT INTO session_seen SELECT '{rev}', current_setting('lock_timeout'), "
    "current_setting('statement_timeout'), current_setting('client_connection_check_interval'), "
    "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND pid <> pg_backend_pid()), txid_current()"
)


def add(project: UserProject, rev: str, parent: str, *statements: str) -> None:
    """A revision `rev` after `parent` running `statements` (op.execute) on upgrade."""
    body = "\n".join(f"op.execute({statement!r})" for statement in statements)
    (project.versions / f"{rev}_test.py").write_text(migration(rev, parent, rev, body, "pass"))


@pytest.fixture(params=list(DRIVERS))
def driver_project(
    request: pytest.FixtureRequest, user_project: Callable[..., UserProject], database_url: str
) -> tuple[UserProject, dict[str, str]]:
    """The second project with env.py and driver of `DRIVERS[param]`, pointed at the test's
    database; the environment its tasks run with."""
    form, variables = DRIVERS[request.param]
    project = user_project(form)
    env = {"DATABASE_URL": database_url, "KUBEMIGRATE_MIGRATIONS_CONFIG": INI, **variables}
    return project, env


def test_the_migration_session_has_kubemigrates_settings(
    driver_project: tuple[UserProject, dict[str, str]], pg_server: Server, database: str
) -> None:
    project, env = driver_project
    add(
        project,
        RECORDER,
        HEAD,
        "CREATE TABLE session_seen (revision text, lock_timeout text, statement_timeout text, "
        "check_interval text, locked bigint, txid bigint)",
        RECORD.format(rev=RECORDER),
    )
    add(project, SECOND, RECORDER, RECORD.format(rev=SECOND))
    settings = {"KUBEMIGRATE_LOCK_TIMEOUT": "7", "KUBEMIGRATE_STATEMENT_TIMEOUT": "11"}
    upgraded = inv(project, {**env, **settings}, "db.upgrade")
    assert upgraded.code == 0, upgraded.output
    rows = pg_server.execute(
        "SELECT revision, lock_timeout, statement_timeout, check_interval, locked, txid "
        "FROM session_seen ORDER BY revision",
        database=database,
    )
    assert [row[:5] for row in rows] == [
        (RECORDER, "7s", "11s", "1s", 1),
        (SECOND, "7s", "11s", "1s", 1),
    ]
    assert rows[0][5] != rows[1][5], "one transaction per migration"


def test_a_migration_behind_a_busy_table_stops_at_lock_timeout(
    driver_project: tuple[UserProject, dict[str, str]], pg_server: Server, database: str
) -> None:
    project, env = driver_project
    assert inv(project, env, "db.upgrade").code == 0
    add(project, RECORDER, HEAD, 'ALTER TABLE "user" ADD COLUMN busy int')
    with holding(pg_server, database, 'LOCK TABLE "user" IN ACCESS SHARE MODE'):
        started = time.monotonic()
        failed = inv(project, {**env, "KUBEMIGRATE_LOCK_TIMEOUT": "1"}, "db.upgrade")
        took = time.monotonic() - started
    assert failed.code == 1, failed.output
    (line,) = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert "lock timeout" in line and "KUBEMIGRATE_LOCK_TIMEOUT" in line, line
    assert took < 30 and "Traceback" not in failed.output
    assert revision(pg_server, database) == HEAD


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_an_interrupt_rolls_the_running_migration_back(
    driver_project: tuple[UserProject, dict[str, str]],
    pg_server: Server,
    database: str,
    sig: signal.Signals,
) -> None:
    project, env = driver_project
    assert inv(project, env, "db.upgrade").code == 0
    add(project, SLOW, HEAD, "CREATE TABLE half_done (id int)", "SELECT pg_sleep(60)")
    proc = popen(project, env, "db.upgrade")
    sent = [0.0]

    def slow_migration_runs() -> str:
        seen = wait_for(proc, f"-> {SLOW}")
        sent[0] = time.monotonic()
        return seen

    result = interrupt_at(proc, sig, slow_migration_runs)
    err = result.stderr
    assert time.monotonic() - sent[0] < 10, "the task should stop within moments"
    assert result.code == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig], err
    assert "error: interrupted" in err and "Traceback" not in err
    assert eventually(lambda: state(pg_server, database) == (HEAD, None))
    assert alembic_children(project) == []


def test_a_lost_tunnel_is_reported_and_rolled_back(
    driver_project: tuple[UserProject, dict[str, str]],
    cluster: KubeAPIServer,
    pg_server: Server,
    database: str,
    tmp_path: Path,
) -> None:
    project, env = driver_project
    kubeconfig = str(cluster.write_kubeconfig(tmp_path, context="test", namespace="default"))
    project.add_env(
        NS,
        KUBEMIGRATE_TARGET="k8s",
        KUBEMIGRATE_KUBECONFIG=kubeconfig,
        KUBEMIGRATE_KUBE_CONTEXT="test",
        KUBEMIGRATE_NAMESPACE=NS,
        KUBEMIGRATE_DB_SECRET="db-credentials",
    )
    env = {key: value for key, value in env.items() if key != "DATABASE_URL"}
    env["KUBECACHEDIR"] = str(tmp_path / "kube-cache")
    add(project, SLOW, HEAD, "CREATE TABLE half_done (id int)", "SELECT pg_sleep(4)")
    proc = popen(project, env, "db.upgrade", "--env", NS)
    try:
        wait_for(proc, f"-> {SLOW}")
        (forwarder,) = [
            pid
            for pid in kubectl_processes(kubeconfig)
            if b"port-forward" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        killed = time.monotonic()
        os.kill(forwarder, signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert time.monotonic() - killed < 5, "the task should fail within seconds"
    assert proc.returncode == 1, err
    assert "error: lost the connection to the cluster: kubectl port-forward exited" in err
    assert "Traceback" not in err and PASSWORD not in err
    assert eventually(lambda: state(pg_server, database) == (HEAD, None))
    assert kubectl_processes(kubeconfig) == []


# -- helpers ---------------------------------------------------------------------------------------


def inv(project: UserProject, env: dict[str, str], *argv: str) -> Result:
    """`inv ARGV` in the project, with `env` added to its environment."""
    return run(
        [str(project.python), "-m", "invoke", *argv], cwd=project.root, env=project.environ(**env)
    )


def popen(project: UserProject, env: dict[str, str], *argv: str) -> subprocess.Popen[str]:
    """`inv ARGV` in the project, in the background, stderr piped as text."""
    return subprocess.Popen(
        [str(project.python), "-m", "invoke", *argv],
        cwd=project.root,
        env=project.environ(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(proc: subprocess.Popen[str], text: str) -> str:
    """Read the task's stderr until `text`, then give the migration a moment to reach its
    long statement; what it read."""
    assert proc.stderr is not None
    seen = ""
    while text not in seen:
        line = proc.stderr.readline()
        assert line, seen
        seen += line
    time.sleep(0.5)
    return seen


def revision(server: Server, database: str) -> object:
    return server.execute("SELECT version_num FROM alembic_version", database=database)[0][0]


def state(server: Server, database: str) -> tuple[object, object]:
    """The recorded revision, and whether the slow migration's table exists."""
    half = server.execute("SELECT to_regclass('half_done')", database=database)[0][0]
    return revision(server, database), half


def eventually(condition: Callable[[], bool], within: float = 10) -> bool:
    """Whether `condition` holds within `within` seconds (the server notices a vanished client
    within a second, and rolls its transaction back)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def alembic_children(project: UserProject) -> list[int]:
    """Live child Alembic processes of `project` (their command line names its alembic.ini)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if (
                b"kubemigrate.migrations.isolated_main" in cmdline
                and bytes(project.root) in cmdline
            ):
                found.append(int(entry.name))
    return found


@contextmanager
def holding(server: Server, database: str, statement: str) -> Iterator[None]:
    """Hold `statement`'s lock in another session for the duration of the block."""
    release, locked = threading.Event(), threading.Event()

    def hold() -> None:
        conn = psycopg2.connect(server.url(database).replace("+psycopg2", ""))
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
                locked.set()
                release.wait(60)
            conn.rollback()
        finally:
            conn.close()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert locked.wait(10)
    try:
        yield
    finally:
        release.set()
        holder.join(10)


@pytest.mark.parametrize("driver", [name for name, (form, _) in DRIVERS.items() if form == "async"])
def test_an_async_env_py_on_another_database_is_stopped(
    user_project: Callable[..., UserProject], pg_server: Server, database: str, driver: str
) -> None:
    """The export leaves DATABASE_NAME out, and the shell still names another database: the
    async engine connects there, and nothing is migrated anywhere."""
    other = f"{database}_other"
    pg_server.execute(f'CREATE DATABASE "{other}" OWNER km_app')
    try:
        project = user_project("async")
        _, variables = DRIVERS[driver]
        env = {
            **variables,
            "DATABASE_URL": pg_server.url(database),
            "KUBEMIGRATE_MIGRATIONS_CONFIG": INI,
            "KUBEMIGRATE_EXPORT": ASYNC_EXPORT.replace(",DATABASE_NAME={database}", ""),
            "DATABASE_NAME": other,
        }
        refused = inv(project, env, "db.upgrade")
        assert refused.code == 1, refused.output
        assert f"/{other} as km_app, not to the database kubemigrate resolved" in refused.stderr
        assert "nothing was migrated" in refused.stderr and "Traceback" not in refused.output
        for name in (database, other):
            found = pg_server.execute("SELECT to_regclass('alembic_version')", database=name)
            assert found == [(None,)], name
    finally:
        pg_server.execute(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')
