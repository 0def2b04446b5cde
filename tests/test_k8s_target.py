"""The k8s and external targets end to end: the real kubectl, the project's Kubernetes API test
server (tests/kube), and a real PostgreSQL playing the database pod.

Credentials live only in the Secret; the password has every URL-breaking character. After
each task no kubectl process may remain.
"""

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import (
    ENV_PY_FORMS,
    NS,
    PASSWORD,
    ROLE,
    Project,
    Server,
    add_slow_revision,
    interrupt_at,
    interrupt_during_slow_migration,
    kubectl_processes,
)
from tests.kubeapi.api import KubeAPIServer

pytestmark = pytest.mark.e2e


def assert_fails(result, *expected: str) -> None:
    assert result.code == 1, result.output
    assert "Traceback" not in result.output, result.output
    assert PASSWORD not in result.output and "p@ss" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    for text in expected:
        assert text in lines[0], result.output


def portforwards(kube: KubeAPIServer) -> int:
    return sum(
        1
        for method, path in kube.requests
        if method == "POST" and path.split("?")[0].endswith("/portforward")
    )


def test_tasks_through_the_tunnel(
    k8s: Project, cluster: KubeAPIServer, pg_server: Server, database: str
) -> None:
    up = k8s.inv("db.upgrade", "--env", NS)
    assert up.code == 0, up.output
    assert "Tunnel to svc/postgres:5432 in namespace 'staging'" in up.stderr
    assert "Running upgrade" in up.stderr
    rows = pg_server.execute("SELECT version_num FROM alembic_version", database=database)
    assert len(rows) == 1

    current = k8s.inv("db.current", "--env", NS)
    assert "(head)" in current.stdout, current.output
    history = k8s.inv("db.history", "--env", NS)
    assert "create user and book tables" in history.stdout
    down = k8s.inv("db.downgrade", "-1", "--env", NS)
    assert down.code == 0, down.output
    assert pg_server.execute("SELECT version_num FROM alembic_version", database=database) == []
    assert k8s.inv("db.upgrade", "--env", NS).code == 0
    made = k8s.inv("db.revision", "nothing changed", "--env", NS)
    assert made.code == 0, made.output
    assert len(list(k8s.versions.glob("*_nothing_changed.py"))) == 1
    for result in (up, current, history, down, made):
        assert PASSWORD not in result.output


def test_chained_tasks_share_one_tunnel(k8s: Project, cluster: KubeAPIServer) -> None:
    before = portforwards(cluster)
    result = k8s.inv("db.upgrade", "--env", NS, "db.current", "--env", NS, "db.check", "--env", NS)
    assert result.code == 0, result.output
    assert result.stderr.count("Tunnel to") == 1
    assert "(head)" in result.stdout
    assert portforwards(cluster) - before == 1


def test_url_key_in_secret(
    k8s: Project, cluster: KubeAPIServer, pg_server: Server, database: str
) -> None:
    # The in-cluster URL: its host is replaced by the tunnel's end.
    url = pg_server.url(database).replace(f"127.0.0.1:{pg_server.port}", "postgres.staging:5432")
    cluster.add_secret(NS, "db-url", {"url": url})
    result = k8s.inv(
        "db.upgrade", "--env", NS, KUBEMIGRATE_DB_SECRET="db-url", KUBEMIGRATE_SECRET_URL_KEY="url"
    )
    assert result.code == 0, result.output


def test_pod_selector_instead_of_service(k8s: Project) -> None:
    result = k8s.inv("db.current", "--env", NS, KUBEMIGRATE_DB_SELECTOR="app=postgres")
    assert result.code == 0, result.output
    assert "Tunnel to pod/postgres-0:5432" in result.stderr


def test_wrong_namespace(k8s: Project) -> None:
    assert_fails(
        k8s.inv("db.current", "--env", NS, KUBEMIGRATE_NAMESPACE="nowhere"),
        "namespace 'nowhere' does not exist",
    )


def test_missing_secret(k8s: Project) -> None:
    assert_fails(
        k8s.inv("db.current", "--env", NS, KUBEMIGRATE_DB_SECRET="nope"),
        "Secret 'nope' does not exist in namespace 'staging'",
    )


def test_missing_secret_key(k8s: Project, cluster: KubeAPIServer) -> None:
    cluster.add_secret(NS, "partial", {"username": ROLE})
    assert_fails(
        k8s.inv("db.current", "--env", NS, KUBEMIGRATE_DB_SECRET="partial"),
        "has no key 'password'",
        "its keys: username",
    )


def test_secret_that_is_not_base64(k8s: Project, cluster: KubeAPIServer) -> None:
    cluster.add_secret(NS, "raw", {"username": ROLE, "password": PASSWORD})
    secret = cluster.get_object(NS, "secrets", "raw")
    assert secret is not None
    secret["data"]["password"] = "%%% not base64 %%%"
    assert_fails(
        k8s.inv("db.current", "--env", NS, KUBEMIGRATE_DB_SECRET="raw"), "'password' is not base64"
    )


def test_pod_not_ready(k8s: Project, cluster: KubeAPIServer) -> None:
    cluster.set_pod_ready(NS, "postgres-0", False)
    assert_fails(
        k8s.inv("db.current", "--env", NS),
        "no Ready pod matches 'app=postgres'",
        "postgres-0 is Running, not Ready",
    )


def test_endpoint_slices_not_readable(k8s: Project, cluster: KubeAPIServer) -> None:
    """Without the right to list EndpointSlices, the Service and its pods answer instead."""
    cluster.forbid("list", "endpointslices", NS)
    current = k8s.inv("db.current", "--env", NS)
    assert current.code == 0, current.output
    assert ("GET", f"/api/v1/namespaces/{NS}/services/postgres") in [
        (method, path.split("?")[0]) for method, path in cluster.requests
    ]


def test_forbidden(k8s: Project, cluster: KubeAPIServer) -> None:
    cluster.forbid("get", "secrets", NS)
    assert_fails(k8s.inv("db.current", "--env", NS), "not allowed to read Secret")


def test_unknown_context(k8s: Project) -> None:
    assert_fails(
        k8s.inv("db.current", "--env", NS, KUBEMIGRATE_KUBE_CONTEXT="prod"),
        "kubeconfig has no context 'prod'",
    )


def test_unreachable_api_server(k8s: Project, cluster: KubeAPIServer, tmp_path: Path) -> None:
    dead = tmp_path / "dead-kubeconfig"
    dead.write_text(Path(k8s.kubeconfig).read_text().replace(cluster.url, "http://127.0.0.1:9"))
    assert_fails(
        k8s.inv("db.current", "--env", NS, KUBEMIGRATE_KUBECONFIG=str(dead)),
        "cannot reach the Kubernetes API server",
    )


def test_refused_credentials(k8s: Project, cluster: KubeAPIServer) -> None:
    cluster.refuse_credentials = True
    assert_fails(k8s.inv("db.current", "--env", NS), "refused kubectl's credentials")


def test_no_kubectl(k8s: Project) -> None:
    assert_fails(
        k8s.inv("db.current", "--env", NS, KUBEMIGRATE_KUBECTL="no-such-kubectl"),
        "kubectl not found",
    )


@pytest.mark.parametrize("situation", ["no current context", "no kubeconfig"])
def test_no_context_configured_anywhere(k8s: Project, tmp_path: Path, situation: str) -> None:
    config = tmp_path / "kubeconfig-without-current"
    if situation == "no current context":
        data = json.loads(Path(k8s.kubeconfig).read_text())
        del data["current-context"]
        config.write_text(json.dumps(data))
        said = f"the kubeconfig {config} (KUBEMIGRATE_KUBECONFIG) names no current context"
    else:
        said = f"the kubeconfig {config} (KUBEMIGRATE_KUBECONFIG), which does not exist,"
    result = k8s.inv(
        "db.current", "--env", NS, KUBEMIGRATE_KUBE_CONTEXT="", KUBEMIGRATE_KUBECONFIG=str(config)
    )
    assert_fails(result, said, "set KUBEMIGRATE_KUBE_CONTEXT", "kubectl config use-context")
    assert "None" not in result.output


def test_current_context_is_used_and_named(k8s: Project) -> None:
    result = k8s.inv("db.current", "--env", NS, KUBEMIGRATE_KUBE_CONTEXT="")
    assert result.code == 0, result.output


def test_external_target_reads_the_secret_and_connects_directly(
    k8s: Project, cluster: KubeAPIServer, pg_server: Server, database: str
) -> None:
    cluster.add_secret(
        NS,
        "external-db",
        {
            "host": "127.0.0.1",
            "port": str(pg_server.port),
            "username": ROLE,
            "password": PASSWORD,
            "database": database,
        },
    )
    before = portforwards(cluster)
    result = k8s.inv(
        "db.upgrade",
        "--env",
        NS,
        KUBEMIGRATE_TARGET="external",
        KUBEMIGRATE_DB_SECRET="external-db",
    )
    assert result.code == 0, result.output
    assert "Tunnel to" not in result.stderr
    assert portforwards(cluster) == before
    assert (
        "(head)"
        in k8s.inv(
            "db.current",
            "--env",
            NS,
            KUBEMIGRATE_TARGET="external",
            KUBEMIGRATE_DB_SECRET="external-db",
        ).stdout
    )


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_a_migration_closes_the_tunnel(
    k8s: Project, pg_server: Server, database: str, sig: int, code: int
) -> None:
    parent = add_slow_revision(k8s)
    result = interrupt_during_slow_migration(k8s, sig, "--env", NS)
    assert result.code == code, result.output
    assert "error: interrupted" in result.stderr
    rows = pg_server.execute("SELECT version_num FROM alembic_version", database=database)
    assert rows == [(parent,)]  # the slow migration was rolled back
    # the k8s fixture checks that no kubectl process is left


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_while_the_cluster_is_asked(
    k8s: Project, cluster: KubeAPIServer, sig: int, code: int
) -> None:
    """Interrupted while the Secret and EndpointSlices lookups and the tunnel are under way:
    the task ends at once and takes every kubectl it started with it."""
    cluster.slow = {"secrets": 60.0, "endpointslices": 60.0}
    signalled: list[float] = []

    def lookups_wait() -> str:
        deadline = time.monotonic() + 20
        while not any(
            b"endpointslices" in Path(f"/proc/{pid}/cmdline").read_bytes()
            for pid in kubectl_processes(k8s.kubeconfig)
        ):
            assert time.monotonic() < deadline, "the lookups never started"
            time.sleep(0.05)
        time.sleep(0.5)  # kubectl has sent its requests and waits for the answers
        signalled.append(time.monotonic())
        return ""

    result = interrupt_at(k8s.popen("db.current", "--env", NS), sig, lookups_wait)
    assert result.code == code, result.output
    assert time.monotonic() - signalled[0] < 5
    assert "error: interrupted" in result.stderr
    # the k8s fixture checks that no kubectl process is left


@pytest.mark.parametrize("env_py", ENV_PY_FORMS)
def test_tunnel_killed_during_a_migration(
    k8s: Project, pg_server: Server, database: str, env_py: str
) -> None:
    if env_py == "own":
        k8s.use_own_env_py()
    parent = k8s.head()
    first = k8s.inv("db.upgrade", "--env", NS)
    assert first.code == 0, first.output
    k8s.add_revision(
        "5eea5eea5eea",
        parent,
        'op.execute("CREATE TABLE half_done (id int)")',
        'op.execute("SELECT pg_sleep(4)")',
    )
    proc = k8s.popen("db.upgrade", "--env", NS)
    assert proc.stderr is not None
    seen = ""
    while "-> 5eea5eea5eea" not in seen:
        line = proc.stderr.readline()
        assert line, seen
        seen += line
    time.sleep(0.3)
    forwarders = [
        pid
        for pid in kubectl_processes(k8s.kubeconfig)
        if b"port-forward" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(forwarders) == 1
    killed_at = time.monotonic()
    os.kill(forwarders[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - killed_at < 3, "the task should fail within seconds"
    assert proc.returncode == 1
    assert "error: lost the connection to the cluster: kubectl port-forward exited" in err
    assert "rolled back, run the task again" in err and "Traceback" not in err

    def state() -> tuple[object, ...]:
        version = pg_server.execute("SELECT version_num FROM alembic_version", database=database)
        half = pg_server.execute("SELECT to_regclass('half_done')", database=database)
        return version[0][0], half[0][0]

    deadline = time.monotonic() + 10  # the server notices the vanished client within a second
    while state() != (parent, None) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert state() == (parent, None)
    rerun = k8s.inv("db.upgrade", "--env", NS)
    assert rerun.code == 0, rerun.output
    assert state() == ("5eea5eea5eea", "half_done")


RESTART_TASK = '''

@task(name="restart-db")
def restart_db(c):
    """Test only: restart the database between two chained tasks."""
    from kubemigrate.postgres.embedded import EmbeddedPostgres

    EmbeddedPostgres(Path({data!r})).restart()


ns.add_task(restart_db)
'''


def test_database_restart_between_chained_tasks(
    k8s: Project, cluster: KubeAPIServer, tmp_path: Path
) -> None:
    from kubemigrate.postgres.embedded import EmbeddedPostgres
    from tests.kubeapi.api import Container

    server = EmbeddedPostgres(tmp_path / "restartable")  # trusts local connections
    status = server.start()
    try:
        server.ensure_database("app")
        cluster.add_pod(
            NS,
            "restartable-0",
            labels={"app": "restartable"},
            containers=[Container(name="postgres", ports={"postgresql": 5432})],
            port_targets={5432: ("127.0.0.1", status.port or 0)},
        )
        cluster.add_secret(
            NS, "restartable", {"username": "postgres", "password": "unused", "database": "app"}
        )
        tasks = k8s.root / "tasks.py"
        tasks.write_text(
            "from pathlib import Path\n\nfrom invoke import task\n\n"
            + tasks.read_text()
            + RESTART_TASK.format(data=str(server.data_dir))
        )
        env = {"KUBEMIGRATE_DB_SELECTOR": "app=restartable", "KUBEMIGRATE_DB_SECRET": "restartable"}
        started = time.monotonic()
        result = k8s.inv("db.upgrade", "--env", NS, "restart-db", "db.verify", "--env", NS, **env)
        assert time.monotonic() - started < 60
        assert result.code == 0, result.output
        assert result.stderr.count("Tunnel to") == 1  # the tunnel survived; a new session
        assert "at head" in result.stdout
    finally:
        server.stop()
