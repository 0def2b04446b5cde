"""Bad input, table-driven: each case gives one line naming the problem, exit code 1, no
traceback, no password, and changes nothing in the database."""

import json
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import NS, PASSWORD, ROLE, Project, Server
from tests.kubeapi.api import KubeAPIServer

pytestmark = pytest.mark.e2e


@dataclass
class Case:
    argv: list[str]
    expected: str
    env: dict[str, str]
    setup: Callable[[Project, KubeAPIServer, Server, str], object] | None = None


def on(ns_env: str = NS) -> list[str]:
    return ["--env", ns_env]


def backup_file(project: Project, cluster: KubeAPIServer, server: Server, db: str) -> Path:
    made = project.inv("db.backup", *on())
    assert made.code == 0, made.output
    return Path(made.stdout.strip())


def corrupt(project: Project, cluster: KubeAPIServer, server: Server, db: str) -> None:
    dump = backup_file(project, cluster, server, db)
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (project.root / "bad.dump").write_bytes(bytes(data))
    shutil.copy(dump.with_suffix(".json"), project.root / "bad.json")


def other_database(project: Project, cluster: KubeAPIServer, server: Server, db: str) -> None:
    dump = backup_file(project, cluster, server, db)
    shutil.copy(dump, project.root / "bad.dump")
    sidecar = json.loads(dump.with_suffix(".json").read_text())
    (project.root / "bad.json").write_text(json.dumps({**sidecar, "database": "billing"}))


def empty_backup(project: Project, *_: object) -> None:
    (project.root / "bad.dump").write_bytes(b"")


def secret(values: dict[str, str]) -> Callable[..., None]:
    def arrange(project: Project, cluster: KubeAPIServer, server: Server, db: str) -> None:
        cluster.add_secret(NS, "bad", {"username": ROLE, "database": db, **values})

    return arrange


def not_base64(project: Project, cluster: KubeAPIServer, server: Server, db: str) -> None:
    secret({"password": PASSWORD})(project, cluster, server, db)
    stored = cluster.get_object(NS, "secrets", "bad")
    assert stored is not None
    stored["data"]["password"] = "***not base64***"


def two_heads(project: Project, *_: object) -> None:
    head = project.inv("db.heads").stdout.split()[0]
    project.branch_revision("aaaaaaaaaaaa", head)
    project.branch_revision("bbbbbbbbbbbb", head)


def no_migrations(project: Project, *_: object) -> None:
    shutil.rmtree(project.root / "migrations")


def malformed_dotenv(project: Project, *_: object) -> None:
    (project.root / ".env").write_text("KUBEMIGRATE_NAMESPACE='unterminated\n")


def dead_kubeconfig(project: Project, cluster: KubeAPIServer, *_: object) -> None:
    config = Path(project.kubeconfig)
    config.write_text(config.read_text().replace(cluster.url, "http://127.0.0.1:9"))


BAD = "bad.dump"
CASES = {
    "unknown environment": Case(["db.upgrade", "--env", "prod"], "unknown environment 'prod'", {}),
    "malformed .env line": Case(
        ["db.upgrade", *on()], ".env, line 1: cannot parse", {}, malformed_dotenv
    ),
    "unknown revision": Case(
        ["db.upgrade", "-r", "deadbeef", *on()],
        "Can't locate revision identified by 'deadbeef'",
        {},
    ),
    "downgrade below base": Case(["db.downgrade", "-5", *on()], "fewer migrations applied", {}),
    "multiple heads": Case(["db.upgrade", *on()], "several heads", {}, two_heads),
    "no migrations directory": Case(
        ["db.upgrade", *on()], "no migrations directory", {}, no_migrations
    ),
    "empty backup file": Case(
        ["db.restore", BAD, "--yes", *on()], "has no sidecar", {}, empty_backup
    ),
    "corrupt backup file": Case(
        ["db.restore", BAD, "--yes", *on()], "does not match its sidecar", {}, corrupt
    ),
    "backup of another database": Case(
        ["db.restore", BAD, "--yes", *on()], "is a backup of database 'billing'", {}, other_database
    ),
    "Secret not base64": Case(
        ["db.current", *on()],
        "'password' is not base64",
        {"KUBEMIGRATE_DB_SECRET": "bad"},
        not_base64,
    ),
    "Secret URL with a password not percent-encoded": Case(
        ["db.current", *on()],
        "Secret 'bad' key 'url' has an '@' after its USER:PASSWORD@",
        {"KUBEMIGRATE_DB_SECRET": "bad", "KUBEMIGRATE_SECRET_URL_KEY": "url"},
        secret({"url": f"postgresql://{ROLE}:{PASSWORD}@postgres:5432/app"}),
    ),
    "missing Secret key": Case(
        ["db.current", *on()], "has no key 'password'", {"KUBEMIGRATE_DB_SECRET": "bad"}, secret({})
    ),
    "missing namespace": Case(
        ["db.current", *on()],
        "namespace 'nowhere' does not exist",
        {"KUBEMIGRATE_NAMESPACE": "nowhere"},
    ),
    "no kubectl on PATH": Case(
        ["db.current", *on()], "kubectl not found", {"KUBEMIGRATE_KUBECTL": "kubectl-missing"}
    ),
    "unknown context": Case(
        ["db.current", *on()],
        "kubeconfig has no context 'elsewhere'",
        {"KUBEMIGRATE_KUBE_CONTEXT": "elsewhere"},
    ),
    "unreachable API server": Case(
        ["db.current", *on()], "cannot reach the Kubernetes API server", {}, dead_kubeconfig
    ),
    "password refused": Case(
        ["db.current", *on()],
        "password authentication failed",
        {"KUBEMIGRATE_DB_SECRET": "bad"},
        secret({"password": "wrong"}),
    ),
    "port taken by something else": Case(["db.current"], "cannot connect to", {}),
}


def state(server: Server, database: str) -> list[tuple[object, ...]]:
    return server.execute(
        "SELECT (SELECT string_agg(version_num, ',') FROM alembic_version), "
        "(SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables "
        " WHERE schemaname = 'public')",
        database=database,
    )


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(
    name: str, k8s: Project, cluster: KubeAPIServer, pg_server: Server, database: str
) -> None:
    case = CASES[name]
    assert k8s.inv("db.upgrade", *on()).code == 0
    if case.setup is not None:
        case.setup(k8s, cluster, pg_server, database)
    before = state(pg_server, database)
    env = dict(case.env)
    if name == "port taken by something else":
        # Something that is not PostgreSQL listens where the database should be.
        with socket.create_server(("127.0.0.1", 0)) as other:
            port = other.getsockname()[1]
            env["DATABASE_URL"] = pg_server.url(database).replace(
                f":{pg_server.port}/", f":{port}/"
            )
            env["KUBEMIGRATE_CONNECT_TIMEOUT"] = "2"
            result = k8s.inv(*case.argv, **env)
    else:
        result = k8s.inv(*case.argv, **env)
    assert result.code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert case.expected in errors[0], result.output
    assert "Traceback" not in result.output
    assert PASSWORD not in result.output and "wrong" not in errors[0]
    assert state(pg_server, database) == before
