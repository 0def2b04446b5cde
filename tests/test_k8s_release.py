"""The release chain on the k8s target, end to end: pg_dump and pg_restore in the database pod
through the real `kubectl exec`, deploys through `kubectl apply -k` and `kubectl rollout
status`, all against the project's Kubernetes API test server."""

import json
import signal
from pathlib import Path

import psycopg2
import pytest

from kubemigrate.postgres.embedded import EmbeddedPostgres
from tests.conftest import (
    NS,
    PASSWORD,
    ROLE,
    Project,
    Server,
    add_postgres_pod,
    interrupt_while_locked,
)
from tests.kubeapi.api import KubeAPIServer
from tests.test_ledger import ledger

pytestmark = pytest.mark.e2e


def seed(server: Server, database: str) -> None:
    server.execute(
        'INSERT INTO "user" (email, name, created_at) '
        "SELECT 'u' || i || '@example.com', 'user ' || i, now() FROM generate_series(1, 40) i",
        database=database,
    )


def users(server: Server, database: str) -> object:
    return server.execute('SELECT count(*) FROM "user"', database=database)[0][0]


def execs(kube: KubeAPIServer) -> list[str]:
    return [path for method, path in kube.requests if "/exec" in path.split("?")[0]]


def test_backup_and_restore_run_in_the_pod(
    k8s: Project, cluster: KubeAPIServer, pg_server: Server, database: str
) -> None:
    assert k8s.inv("db.upgrade", "--env", NS).code == 0
    seed(pg_server, database)
    made = k8s.inv("db.backup", "--env", NS)
    assert made.code == 0, made.output
    dump = Path(made.stdout.strip())
    assert dump.parent == k8s.root / "backups" / NS
    sidecar = json.loads(dump.with_suffix(".json").read_text())
    assert sidecar["dumped_by"] == "pg_dump in pod postgres-0"
    assert execs(cluster), "pg_dump should have run through kubectl exec"
    assert PASSWORD not in json.dumps(cluster.requests)

    pg_server.execute('DELETE FROM "user"', database=database)
    restored = k8s.inv("db.restore", str(dump), "--env", NS, "--yes")
    assert restored.code == 0, restored.output
    assert users(pg_server, database) == 40
    assert PASSWORD not in json.dumps(cluster.requests)


def test_deploy_applies_and_waits(k8s: Project, cluster: KubeAPIServer) -> None:
    assert k8s.inv("db.upgrade", "--env", NS).code == 0
    result = k8s.inv("deploy", "--env", NS)
    assert result.code == 0, result.output
    assert cluster.get_object(NS, "deployments", "web") is not None
    assert "successfully rolled out" in result.stderr


def test_deploy_refuses_a_database_behind_head(k8s: Project, cluster: KubeAPIServer) -> None:
    refused = k8s.inv("deploy", "--env", NS)
    assert refused.code == 1 and "not at head" in refused.stderr, refused.output
    assert cluster.get_object(NS, "deployments", "web") is None
    assert k8s.inv("deploy", "--env", NS, "--skip-db-check").code == 0


def test_deploy_times_out_on_a_rollout_that_never_finishes(
    k8s: Project, cluster: KubeAPIServer
) -> None:
    cluster.auto_rollout = False
    assert k8s.inv("db.upgrade", "--env", NS).code == 0
    result = k8s.inv("deploy", "--env", NS, KUBEMIGRATE_ROLLOUT_TIMEOUT="2")
    assert result.code == 1, result.output
    assert "deployment/web did not finish rolling out within 2s" in result.stderr


def test_release(k8s: Project, cluster: KubeAPIServer, pg_server: Server, database: str) -> None:
    result = k8s.inv("release", "--env", NS)
    assert result.code == 0, result.output
    assert result.stderr.count("Tunnel to") == 1
    assert len(list((k8s.root / "backups" / NS).glob("*.dump"))) == 1
    assert "(head)" in k8s.inv("db.current", "--env", NS).stdout
    assert cluster.get_object(NS, "deployments", "web") is not None


def stray_table(server: Server, database: str) -> None:
    """A table the models do not know: the 'models match' check fails on it."""
    server.execute("CREATE TABLE stray (id int)", database=database)
    server.execute(f"ALTER TABLE stray OWNER TO {ROLE}", database=database)


@pytest.mark.parametrize(
    "argv",
    [
        ["release", "--env", NS],
        [
            "db.backup",
            "--env",
            NS,
            "db.upgrade",
            "--env",
            NS,
            "db.verify",
            "--env",
            NS,
            "deploy",
            "--env",
            NS,
        ],
        [
            "backup",
            "--env",
            NS,
            "migrate",
            "--env",
            NS,
            "verify",
            "--env",
            NS,
            "deploy",
            "--env",
            NS,
        ],
    ],
    ids=["release", "chained", "short-names"],
)
def test_a_failed_verify_stops_the_release(
    k8s: Project, cluster: KubeAPIServer, pg_server: Server, database: str, argv: list[str]
) -> None:
    stray_table(pg_server, database)
    result = k8s.inv(*argv)
    assert result.code == 1, result.output
    assert "verification failed: models match" in result.stderr
    assert "failed after: backup, upgrade." in result.stderr
    (dump,) = (k8s.root / "backups" / NS).glob("*.dump")
    assert f"inv db.restore {dump} --env {NS} --yes" in result.stderr
    # The ledger says where the database was before the release.
    assert f"inv db.downgrade base --env {NS} --yes" in result.stderr
    assert cluster.get_object(NS, "deployments", "web") is None
    assert result.stderr.count("Tunnel to") == 1


def test_chained_release_succeeds_over_one_tunnel(
    k8s: Project, cluster: KubeAPIServer, pg_server: Server, database: str
) -> None:
    result = k8s.inv(
        "backup", "--env", NS, "migrate", "--env", NS, "verify", "--env", NS, "deploy", "--env", NS
    )
    assert result.code == 0, result.output
    assert result.stderr.count("Tunnel to") == 1
    assert cluster.get_object(NS, "deployments", "web") is not None
    rows = ledger(pg_server, database)
    assert [(r["action"], r["environment"]) for r in rows] == [("upgrade", NS)]
    assert (rows[0]["heads_before"], rows[0]["heads_after"]) == ("", k8s.head())


def test_dry_run_prints_the_plan_and_changes_nothing(
    k8s: Project, cluster: KubeAPIServer, pg_server: Server, database: str
) -> None:
    result = k8s.inv("release", "--dry-run", "--env", NS)
    assert result.code == 0, result.output
    plan = result.stdout
    assert "1. backup: pg_dump in pod postgres-0" in plan
    assert "exec -i postgres-0" in plan
    assert "2. upgrade: base -> " in plan and "CREATE TABLE" in plan
    assert (
        f"rollback: the head before the release is base: inv db.downgrade base --env {NS}" in plan
    )
    assert "kubectl --context test --namespace staging apply -k" in plan
    assert "rollout status deployment/web --timeout=300s" in plan
    assert PASSWORD not in result.output
    tables = pg_server.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'", database=database
    )
    assert tables == []
    assert not (k8s.root / "backups").exists()
    assert cluster.get_object(NS, "deployments", "web") is None


def test_verify_on_k8s_checks_the_pod(k8s: Project, cluster: KubeAPIServer) -> None:
    assert k8s.inv("db.upgrade", "--env", NS).code == 0
    ok = json.loads(k8s.inv("db.verify", "--json", "--env", NS).stdout)
    checks = {c["name"]: c for c in ok["checks"]}
    assert ok["passed"] and checks["pod ready"]["detail"].startswith("postgres-0")
    cluster.set_pod_ready(NS, "postgres-0", False)
    failed = k8s.inv("db.verify", "--json", "--env", NS)
    assert failed.code == 1
    results = {c["name"]: c["result"] for c in json.loads(failed.stdout)["checks"]}
    assert results["pod ready"] == "FAIL"


def test_backup_to_another_directory(k8s: Project, tmp_path: Path) -> None:
    assert k8s.inv("db.upgrade", "--env", NS).code == 0
    made = k8s.inv("db.backup", "--output", str(tmp_path / "elsewhere"), "--env", NS)
    assert made.code == 0, made.output
    dump = Path(made.stdout.strip())
    assert dump.parent == tmp_path / "elsewhere" / NS and dump.with_suffix(".json").exists()
    listing = k8s.inv("db.backups", "--output", str(tmp_path / "elsewhere"), "--env", NS)
    assert dump.name in listing.stdout


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_backup_in_the_pod(
    k8s: Project, database_url: str, sig: int, code: int
) -> None:
    assert k8s.inv("db.upgrade", "--env", NS).code == 0
    result, left = interrupt_while_locked(
        k8s,
        database_url,
        "pg_dump",
        lambda task, _: task.send_signal(sig),
        "db.backup",
        "--env",
        NS,
    )
    assert result.code == code, result.output
    assert "interrupted" in result.stderr
    written = [p for p in (k8s.root / "backups").rglob("*") if p.name != ".gitignore"]
    assert written in ([], [k8s.root / "backups" / NS])
    assert left == set()  # the pod's pg_dump ended with its exec session
    # (the k8s fixture checks that no kubectl process is left)


def test_a_pod_on_another_server_is_refused(
    k8s: Project, cluster: KubeAPIServer, pg_server: Server, database: str, tmp_path: Path
) -> None:
    """pg_dump in the pod must reach the server the tunnel reaches: the revision recorded is
    read there, in the snapshot pg_dump is given. A pod whose PostgreSQL is another server
    (a replica behind the same Service, say) fails the backup with what to change."""
    assert k8s.inv("db.upgrade", "--env", NS).code == 0
    other = EmbeddedPostgres(tmp_path / "other")
    port = other.start().port
    try:
        other.ensure_database(database)
        connection = psycopg2.connect(host="127.0.0.1", port=port, user="postgres")
        connection.autocommit = True
        connection.cursor().execute(f"CREATE ROLE {ROLE} LOGIN")
        connection.close()
        # The tunnel still reaches pg_server; programs exec'd in the pod reach `other`.
        add_postgres_pod(cluster, pg_server.port, exec_port=port)
        made = k8s.inv("db.backup", "--env", NS)
    finally:
        other.stop()
    assert made.code == 1
    last = made.stderr.strip().splitlines()[-1]
    assert last.startswith("error: pg_dump in pod postgres-0 (namespace"), made.stderr
    assert "another PostgreSQL server than the tunnel" in made.stderr
    assert "KUBEMIGRATE_DB_SELECTOR" in made.stderr and "Traceback" not in made.stderr
    assert not list((k8s.root / "backups" / NS).glob("*")), "nothing may look like a backup"
