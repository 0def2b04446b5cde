"""Shared fixtures: one real PostgreSQL for the session, a database per test, a project per test.

The server is the one `pgserver` ships, run by kubemigrate's own `EmbeddedPostgres` with
password authentication on 127.0.0.1, so tests exercise real credentials. Tasks run as a user
types them: `python -m invoke ...` in a temporary copy of the project, with a clean
environment (no KUBEMIGRATE_* or DATABASE_URL leaking in from the developer's shell).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg2
import pytest
from psycopg2 import sql

from kubemigrate.postgres.binaries import bin_dir
from kubemigrate.postgres.embedded import EmbeddedPostgres
from kubemigrate.postgres.urls import url_from_parts

if TYPE_CHECKING:
    from tests.kubeapi.api import KubeAPIServer

REPO = Path(__file__).resolve().parent.parent
# Every character that has broken a URL, an ini file or a shell somewhere.
PASSWORD = "p@ss:w/o%rd 'q\" #x"
ROLE = "km_app"


@dataclass(frozen=True)
class Server:
    """The session's PostgreSQL: admin access over its socket, app access with a password."""

    embedded: EmbeddedPostgres
    port: int

    def execute(
        self,
        query: str | sql.Composable,
        params: tuple[object, ...] = (),
        database: str = "postgres",
    ) -> list[tuple[object, ...]]:
        """Run one statement as the superuser; the rows it returned."""
        conn = psycopg2.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            password=ADMIN_PASSWORD,
            dbname=database,
        )
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def url(self, database: str, *, password: str = PASSWORD) -> str:
        return url_from_parts(
            host="127.0.0.1", port=self.port, user=ROLE, password=password, database=database
        ).render_as_string(hide_password=False)


ADMIN_PASSWORD = "admin-secret"


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("pg") / "data"
    server = EmbeddedPostgres(data, host_auth="scram-sha-256")
    server.start()
    status = server.status()
    assert status.port
    # Local (socket) connections are trusted: set the superuser's password through one.
    socket_conn = psycopg2.connect(
        host=status.socket_dir, port=status.port, user="postgres", dbname="postgres"
    )
    socket_conn.autocommit = True
    with socket_conn.cursor() as cur:
        cur.execute("ALTER ROLE postgres PASSWORD %s", (ADMIN_PASSWORD,))
        cur.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD %s").format(sql.Identifier(ROLE)),
            (PASSWORD,),
        )
    socket_conn.close()
    try:
        yield Server(server, status.port)
    finally:
        server.stop()


@pytest.fixture
def database(pg_server: Server) -> Iterator[str]:
    """A fresh, empty database owned by the app role; its name."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg_server.execute(
        sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(ROLE))
    )
    yield name
    pg_server.execute(
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    )


@pytest.fixture
def database_url(pg_server: Server, database: str) -> str:
    return pg_server.url(database)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Project:
    """A copy of this repository's project files in a temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        shutil.copy(REPO / "alembic.ini", root / "alembic.ini")
        shutil.copy(REPO / "tasks.py", root / "tasks.py")
        shutil.copytree(
            REPO / "migrations", root / "migrations", ignore=shutil.ignore_patterns("__pycache__")
        )
        shutil.copytree(REPO / "k8s", root / "k8s")
        self.env: dict[str, str] = {}
        self.kubeconfig = ""

    def write_env(self, name: str, **values: str) -> None:
        """Write `.env` (name "") or `.env.<name>`."""
        path = self.root / (f".env.{name}" if name else ".env")
        path.write_text("".join(f"{key}={_quote(value)}\n" for key, value in values.items()))

    @property
    def versions(self) -> Path:
        return self.root / "migrations" / "versions"

    def popen(self, *argv: str) -> subprocess.Popen[str]:
        """Start `inv ARGV...` in the background, output piped, as text."""
        return subprocess.Popen(
            [sys.executable, "-m", "invoke", *argv],
            cwd=self.root,
            env=clean_environ(**self.env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def add_revision(
        self,
        rev: str,
        parent: str | tuple[str, ...] | None,
        *upgrade: str,
        downgrade: tuple[str, ...] = (),
    ) -> None:
        """A hand-written revision `rev` on top of `parent`; `upgrade`/`downgrade` are the
        statements of its functions (Alembic `op` and `sa` are imported)."""

        def body(lines: tuple[str, ...]) -> str:
            return "".join(f"    {line}\n" for line in lines) or "    pass\n"

        (self.versions / f"{rev}.py").write_text(
            f'"""{rev}"""\n\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
            f"revision = {rev!r}\ndown_revision = {parent!r}\nbranch_labels = None\n"
            f"depends_on = None\n\n\ndef upgrade() -> None:\n{body(upgrade)}\n\n"
            f"def downgrade() -> None:\n{body(downgrade)}"
        )

    def branch_revision(self, rev: str, parent: str) -> None:
        """An empty revision `rev` on top of `parent` (two of them make divergent heads)."""
        self.add_revision(rev, parent)

    def head(self) -> str:
        return self.inv("db.heads").stdout.split()[0]

    def use_own_env_py(self) -> None:
        """Replace migrations/env.py with an application's own: it builds its engine from
        DATABASE_URL and never takes kubemigrate's connection, so the tasks run Alembic in a
        child process."""
        (self.root / "migrations" / "env.py").write_text(OWN_ENV_PY)

    def inv(self, *argv: str, **env: str) -> Result:
        """Run `inv ARGV...` in the project as a user would (`env` adds variables)."""
        return run(
            [sys.executable, "-m", "invoke", *argv],
            cwd=self.root,
            env={**self.env, **env},
            timeout=180,
        )


OWN_ENV_PY = '''"""An application's own env.py, as Alembic's generic template writes it."""

import os

from alembic import context
from sqlalchemy import create_engine, pool
from sqlmodel import SQLModel

import app.entities.book.models  # noqa: F401
import app.entities.user.models  # noqa: F401

target_metadata = SQLModel.metadata


def run_migrations_offline() -> None:
    context.configure(url=os.environ["DATABASE_URL"], target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(os.environ["DATABASE_URL"], poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
'''
# How a project's env.py takes its database: kubemigrate's connection (this repository's), or
# its own engine from DATABASE_URL (run in a child Alembic process).
ENV_PY_FORMS = ("connection", "own")


def clean_environ(**extra: str) -> dict[str, str]:
    """os.environ without kubemigrate's settings, plus `extra`."""
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("KUBEMIGRATE_") and key != "DATABASE_URL"
    }
    return {**base, **extra}


def run(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    timeout: float = 120,
    input: bytes | None = None,
) -> Result:
    proc = subprocess.run(
        argv, cwd=cwd, env=clean_environ(**env), capture_output=True, timeout=timeout, input=input
    )
    return Result(
        proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    )


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


@pytest.fixture
def project(tmp_path: Path, database_url: str) -> Project:
    """A project whose `.env` points at the test's own database."""
    (tmp_path / "project").mkdir()
    proj = Project(tmp_path / "project")
    proj.env["DATABASE_URL"] = database_url
    return proj


def add_slow_revision(project: Project) -> str:
    """A migration that sleeps 60 s after a first change; returns the revision it follows."""
    parent = project.head()
    project.add_revision(
        "5105105105ab",
        parent,
        'op.execute("CREATE TABLE half_done (id int)")',
        'op.execute("SELECT pg_sleep(60)")',
    )
    return parent


def interrupt_during_slow_migration(project: Project, sig: int, *argv: str) -> Result:
    """Start `inv db.upgrade ARGV`, send `sig` once the slow migration runs; the result."""
    import time

    proc = project.popen("db.upgrade", *argv)

    def slow_migration_runs() -> str:
        assert proc.stderr is not None
        seen = ""
        while "5105105105ab" not in seen:
            line = proc.stderr.readline()
            if not line:
                break
            seen += line
        assert "5105105105ab" in seen, seen
        time.sleep(0.3)  # let the migration reach its long statement
        return seen

    return interrupt_at(proc, sig, slow_migration_runs)


def interrupt_at(proc: subprocess.Popen[str], sig: int, moment: Callable[[], str]) -> Result:
    """Wait for `moment` (it returns what it read of stderr), send `sig`, wait for the end;
    the result. The process is killed should anything fail on the way."""
    try:
        seen = moment()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Result(proc.returncode, out, seen + err)


# -- a cluster: the Kubernetes API test server with a PostgreSQL pod -----------------------------

NS = "staging"


def kubectl_processes(marker: str) -> list[int]:
    """Pids of live kubectl processes whose command line mentions `marker` (a kubeconfig)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().split(") ", 1)[1][0]
        except (OSError, IndexError):
            continue
        if marker.encode() in cmdline and b"kubectl" in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


@pytest.fixture
def kube() -> Iterator[KubeAPIServer]:
    from tests.kubeapi.api import KubeAPIServer

    with KubeAPIServer() as api:
        yield api


@pytest.fixture
def cluster(kube: KubeAPIServer, pg_server: Server, database: str) -> KubeAPIServer:
    """Namespace `staging`: a PostgreSQL pod (played by the test server), its Service, and a
    Secret with its credentials. Commands exec'd in the pod find the embedded pg_dump and reach
    the database through the container's PGHOST/PGPORT, as in a real postgres image."""
    kube.add_namespace(NS)
    kube.add_secret(
        NS, "db-credentials", {"username": ROLE, "password": PASSWORD, "database": database}
    )
    add_postgres_pod(kube, pg_server.port)
    kube.add_service(
        NS,
        "postgres",
        selector={"app": "postgres"},
        ports=[{"name": "postgresql", "port": 5432, "targetPort": "postgresql"}],
    )
    return kube


def add_postgres_pod(kube: KubeAPIServer, port: int, exec_port: int | None = None) -> None:
    """Pod `postgres-0` in NS (labels app=postgres): port-forwards reach the PostgreSQL on
    127.0.0.1:`port`, commands exec'd in it the one on `exec_port` (by default the same)."""
    from tests.kubeapi.api import Container

    container_env = {
        "PATH": f"{bin_dir()}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PGHOST": "127.0.0.1",
        "PGPORT": str(exec_port or port),
    }
    kube.add_pod(
        NS,
        "postgres-0",
        labels={"app": "postgres"},
        containers=[Container(name="postgres", ports={"postgresql": 5432}, env=container_env)],
        port_targets={5432: ("127.0.0.1", port)},
    )


@pytest.fixture
def k8s(project: Project, cluster: KubeAPIServer, tmp_path: Path) -> Iterator[Project]:
    """The project with an environment `staging` that targets the cluster; on teardown, no
    kubectl process may be left."""
    project.kubeconfig = str(
        cluster.write_kubeconfig(tmp_path, context="test", namespace="default")
    )
    project.env.pop("DATABASE_URL")
    project.env["KUBECACHEDIR"] = str(tmp_path / "kube-cache")
    project.write_env(
        NS,
        KUBEMIGRATE_TARGET="k8s",
        KUBEMIGRATE_KUBECONFIG=project.kubeconfig,
        KUBEMIGRATE_KUBE_CONTEXT="test",
        KUBEMIGRATE_NAMESPACE=NS,
        KUBEMIGRATE_DB_SERVICE="postgres",
        KUBEMIGRATE_DB_SECRET="db-credentials",
    )
    yield project
    assert kubectl_processes(project.kubeconfig) == []


# -- processes, and a table held locked ----------------------------------------------------------


def pids_of(name: str) -> list[int]:
    """Pids of the live processes called `name` of this worker (tests.watching.ours): not those
    of the other pytest-xdist worker."""
    from tests.watching import ours

    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name and ours(
                    int(entry.name), os.getpid()
                ):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def started(name: str, before: set[int]) -> int:
    """The pid of the first new process called `name`, waiting up to 30 s for it. Short-lived
    `name --version` probes (a backup asks pg_dump its version first) are not it, nor is one
    that has exited but is not yet reaped (its command line reads empty)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for pid in set(pids_of(name)) - before:
            try:
                argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue  # gone already
            if argv != [b""] and b"--version" not in argv:
                return pid
        time.sleep(0.05)
    raise AssertionError(f"no {name} process started within 30 s")


def interrupt_while_locked(
    project: Project,
    database_url: str,
    program: str,
    act: Callable[[subprocess.Popen[str], int], None],
    *argv: str,
) -> tuple[Result, set[int]]:
    """Run `inv ARGV` while another session holds table book locked, so that `program`
    (pg_dump, pg_restore) waits inside; once it runs, `act(task, program_pid)`. The result,
    and the pids of `program` processes still alive at the end that were not there before."""
    import threading

    before = set(pids_of(program))
    release, locked = threading.Event(), threading.Event()

    def hold() -> None:
        conn = psycopg2.connect(database_url.replace("+psycopg2", ""))
        with conn.cursor() as cur:
            cur.execute("LOCK TABLE book IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(60)
        conn.rollback()
        conn.close()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert locked.wait(10)
    proc = project.popen(*argv)
    try:
        act(proc, started(program, before))
        out, err = proc.communicate(timeout=30)
    finally:
        release.set()
        holder.join(10)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 10  # a pod's process ends with its exec session
    while set(pids_of(program)) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    return Result(proc.returncode, out, err), set(pids_of(program)) - before
