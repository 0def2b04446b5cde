"""Migrations in the cluster, end to end through the real kubectl: `inv db.upgrade --in-cluster`
creates a Job from the release's image (the test server runs its container as a local
`python -m kubemigrate` in the project), streams its log and waits for Complete or Failed."""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import NS, PASSWORD, Project, Server, interrupt_at
from tests.kubeapi.api import KubeAPIServer
from tests.test_ledger import ledger
from tests.watching import ProcessWatcher

pytestmark = pytest.mark.e2e

IMAGE = "ghcr.io/example/sample-app:test"


def release_manifests(project: Project) -> None:
    """The project's Deployment `web`: its image, env and working directory (the project, where
    the test server runs the container) are what the Job takes."""
    (project.root / "k8s").mkdir(exist_ok=True)
    (project.root / "k8s" / "kustomization.yaml").write_text("resources:\n  - web.yaml\n")
    (project.root / "k8s" / "web.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n"
        "  selector:\n    matchLabels: {app: web}\n  template:\n"
        "    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n"
        f"        - name: web\n          image: {IMAGE}\n"
        f"          workingDir: {project.root}\n"
        "          env:\n            - {name: LOG_LEVEL, value: info}\n"
    )


@pytest.fixture
def incluster(k8s: Project, pg_server: Server) -> Project:
    """The k8s project, its environment `staging` running migrations as Jobs; the Job reaches
    the test's PostgreSQL directly on 127.0.0.1."""
    return as_jobs(k8s, pg_server)


def as_jobs(k8s: Project, pg_server: Server, **more: str) -> Project:
    """`k8s` with the release's manifests and `staging` migrating as Jobs that reach the test's
    PostgreSQL directly, plus the settings `more`."""
    release_manifests(k8s)
    settings = {
        "KUBEMIGRATE_RUNNER": "job",
        "KUBEMIGRATE_JOB_DB_HOST": "127.0.0.1",
        "KUBEMIGRATE_JOB_DB_PORT": str(pg_server.port),
        **more,
    }
    with (k8s.root / f".env.{NS}").open("a") as env:
        env.write("".join(f"{name}={value}\n" for name, value in settings.items()))
    return k8s


def kubectl(
    project: Project, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", project.kubeconfig, "--context", "test", "-n", NS, *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        env={**os.environ, **project.env},
    )


def kubemigrate_objects(project: Project) -> list[dict[str, object]]:
    found = kubectl(
        project, "get", "jobs,pods", "-l", "app.kubernetes.io/managed-by=kubemigrate", "-o", "json"
    )
    assert found.returncode == 0, found.stderr
    return list(json.loads(found.stdout)["items"])


def version(server: Server, database: str) -> object:
    rows = server.execute("SELECT to_regclass('alembic_version')", database=database)
    if rows[0][0] is None:
        return None
    return server.execute("SELECT version_num FROM alembic_version", database=database)[0][0]


SLOW = "5105105105ab"


def stderr_until(proc: subprocess.Popen[str], marker: str) -> str:
    """What `proc` wrote to stderr up to the line holding `marker` (the Job's log, streamed)."""
    assert proc.stderr is not None
    seen = ""
    while marker not in seen:
        line = proc.stderr.readline()
        assert line, seen
        seen += line
    return seen


def slow_revision(project: Project, seconds: float) -> str:
    parent = project.head()
    project.add_revision(
        "5105105105ab",
        parent,
        'op.execute("CREATE TABLE half_done (id int)")',
        f'op.execute("SELECT pg_sleep({seconds})")',
    )
    return parent


def test_an_in_cluster_upgrade_streams_the_log_and_cleans_up(
    incluster: Project, kube: KubeAPIServer, pg_server: Server, database: str
) -> None:
    kube.forbid("get", "secrets", NS)  # in this mode the password is never read
    with ProcessWatcher(PASSWORD) as watcher:
        result = incluster.inv("db.upgrade", "--env", NS)
    assert result.code == 0, result.output
    assert "Migration Job kubemigrate-staging-" in result.stderr
    assert "Running upgrade  -> " in result.stderr  # the migration's own log, streamed
    assert "completed (deleted)" in result.stderr
    assert version(pg_server, database) == incluster.head()
    assert PASSWORD not in result.output
    assert watcher.leaks == []
    assert watcher.holders == {b"kubemigrate"}  # the Job's container alone, in the cluster
    assert kubemigrate_objects(incluster) == []  # no Job or pod left


def test_the_job_spec_holds_references_not_the_password(incluster: Project) -> None:
    shown = incluster.inv("db.job-manifest", "--env", NS)
    assert shown.code == 0, shown.output
    assert PASSWORD not in shown.stdout
    assert "secretKeyRef" in shown.stdout and "backoffLimit: 0" in shown.stdout
    assert "restartPolicy: Never" in shown.stdout and f"image: {IMAGE}" in shown.stdout
    assert "sidecar.istio.io/inject: 'false'" in shown.stdout
    accepted = kubectl(incluster, "apply", "--dry-run=client", "-f", "-", stdin=shown.stdout)
    assert accepted.returncode == 0, accepted.stderr
    assert "created (dry run)" in accepted.stdout


def test_without_manifests_the_advised_image_setting_makes_the_job(incluster: Project) -> None:
    refused = incluster.inv("db.job-manifest", "--env", NS, KUBEMIGRATE_MANIFESTS="none")
    assert refused.code == 1 and "KUBEMIGRATE_JOB_IMAGE" in refused.stderr, refused.output
    image = "registry.example/app:2"
    shown = incluster.inv(
        "db.job-manifest", "--env", NS, KUBEMIGRATE_MANIFESTS="none", KUBEMIGRATE_JOB_IMAGE=image
    )
    assert shown.code == 0, shown.output
    assert f"image: {image}" in shown.stdout and "secretKeyRef" in shown.stdout
    accepted = kubectl(incluster, "apply", "--dry-run=client", "-f", "-", stdin=shown.stdout)
    assert accepted.returncode == 0, accepted.stderr


def test_a_failing_revision_returns_its_error_and_keeps_the_job(
    incluster: Project, pg_server: Server, database: str
) -> None:
    assert incluster.inv("db.upgrade", "--env", NS, KUBEMIGRATE_RUNNER="local").code == 0
    parent = incluster.head()
    incluster.add_revision("baadbaadbaad", parent, 'op.execute("SELECT no_such_function()")')
    result = incluster.inv("db.upgrade", "--env", NS)
    assert result.code == 1, result.output
    line = [x for x in result.stderr.splitlines() if x.startswith("error:")][-1]
    assert "the migration failed in the cluster (exit code 1)" in line
    assert "no_such_function" in line and "kubectl logs job/kubemigrate-staging-" in line
    assert version(pg_server, database) == parent
    listed = incluster.inv("db.jobs", "--env", NS)
    assert "Failed" in listed.stdout and "baadbaadbaad" in listed.stdout


def test_the_deadline_is_enforced(incluster: Project, pg_server: Server, database: str) -> None:
    assert incluster.inv("db.upgrade", "--env", NS, KUBEMIGRATE_RUNNER="local").code == 0
    parent = slow_revision(incluster, 60)
    started = time.monotonic()
    result = incluster.inv("db.upgrade", "--env", NS, KUBEMIGRATE_JOB_DEADLINE="3")
    assert time.monotonic() - started < 30
    assert result.code != 0, result.output
    assert "ran longer than KUBEMIGRATE_JOB_DEADLINE (3s)" in result.stderr
    assert version(pg_server, database) == parent


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_detaches_and_the_job_completes(
    incluster: Project, pg_server: Server, database: str, sig: int, code: int
) -> None:
    assert incluster.inv("db.upgrade", "--env", NS, KUBEMIGRATE_RUNNER="local").code == 0
    slow_revision(incluster, 3)
    proc = incluster.popen("db.upgrade", "--env", NS)

    result = interrupt_at(proc, sig, lambda: stderr_until(proc, SLOW))
    assert result.code == code, result.output
    assert "goes on in namespace 'staging'" in result.stderr
    name = result.stderr.split("inv db.job ", 1)[1].split()[0]
    followed = incluster.inv("db.job", name, "--follow", "--env", NS)
    assert followed.code == 0, followed.output
    assert version(pg_server, database) == "5105105105ab"


def test_cancel_stops_a_running_job(incluster: Project, pg_server: Server, database: str) -> None:
    assert incluster.inv("db.upgrade", "--env", NS, KUBEMIGRATE_RUNNER="local").code == 0
    parent = slow_revision(incluster, 60)
    proc = incluster.popen("db.upgrade", "--env", NS)

    result = interrupt_at(proc, signal.SIGINT, lambda: stderr_until(proc, SLOW))
    name = result.stderr.split("inv db.job ", 1)[1].split()[0]
    cancelled = incluster.inv("db.job", name, "--cancel", "--env", NS)
    assert cancelled.code == 0, cancelled.output
    deadline = time.monotonic() + 15  # the server notices the vanished client
    running_sleep = (
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()"
    )
    while time.monotonic() < deadline and pg_server.execute(running_sleep, ("%pg_sleep(60)%",)) != [
        (0,)
    ]:
        time.sleep(0.2)
    assert version(pg_server, database) == parent
    assert kubemigrate_objects(incluster) == []


def test_two_concurrent_in_cluster_upgrades_apply_once(
    incluster: Project, pg_server: Server, database: str
) -> None:
    assert incluster.inv("db.upgrade", "--env", NS, KUBEMIGRATE_RUNNER="local").code == 0
    slow_revision(incluster, 1.5)
    procs = [incluster.popen("db.upgrade", "--env", NS) for _ in range(2)]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out + err
    assert sum(err.count("Running upgrade") for _, err in outputs) == 1, outputs
    assert version(pg_server, database) == "5105105105ab"


def test_a_missing_secret_key_fails_at_once(incluster: Project) -> None:
    started = time.monotonic()
    result = incluster.inv("db.upgrade", "--env", NS, KUBEMIGRATE_SECRET_PASSWORD_KEY="nope")
    assert result.code == 1, result.output
    assert time.monotonic() - started < 20
    assert "could not start, its Secret or ConfigMap (or a key in it) is missing" in result.stderr
    assert "CreateContainerConfigError" in result.stderr
    assert kubemigrate_objects(incluster) == []


def test_an_image_that_cannot_be_pulled_fails_at_once(
    incluster: Project, kube: KubeAPIServer
) -> None:
    kube.unpullable_images.add(IMAGE)
    result = incluster.inv("db.upgrade", "--env", NS)
    assert result.code == 1, result.output
    assert "its image cannot be pulled" in result.stderr and IMAGE in result.stderr


def test_an_out_of_memory_kill_is_named(
    incluster: Project, kube: KubeAPIServer, pg_server: Server, database: str
) -> None:
    assert incluster.inv("db.upgrade", "--env", NS, KUBEMIGRATE_RUNNER="local").code == 0
    parent = slow_revision(incluster, 60)
    proc = incluster.popen("db.upgrade", "--env", NS)
    seen = stderr_until(proc, SLOW)
    (pod,) = [item for item in kubemigrate_objects(incluster) if item["kind"] == "Pod"]
    kube.oom_kill(NS, pod["metadata"]["name"])  # type: ignore[index]
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 137, seen + err
    assert "ran out of memory (OOMKilled)" in err
    assert version(pg_server, database) == parent


def test_the_release_migrates_in_the_cluster_when_the_environment_says_so(
    incluster: Project, pg_server: Server, database: str
) -> None:
    result = incluster.inv("backup", "migrate", "verify", KUBEMIGRATE_ENV=NS)
    assert result.code == 0, result.output
    assert "Migration Job kubemigrate-staging-" in result.stderr
    assert version(pg_server, database) == incluster.head()


def test_the_job_writes_the_ledger_with_the_launchers_facts(
    incluster: Project, pg_server: Server, database: str
) -> None:
    slow_revision(incluster, seconds=0.2)
    result = incluster.inv("db.upgrade", "--env", NS)
    assert result.code == 0, result.output
    rows = ledger(pg_server, database)
    assert (rows[-1]["action"], rows[-1]["heads_after"]) == ("upgrade", incluster.head())
    assert rows[0]["heads_before"] == ""
    for row in rows:
        # The pod's own settings say "local": these are the task's, passed to the Job.
        assert row["environment"] == NS
        assert str(row["applied_by"]).startswith(getpass.getuser())
    assert len({row["run_id"] for row in rows}) == 1
    assert incluster.inv("db.validate", "--env", NS).code == 0


def test_an_image_without_kubemigrate_is_named(incluster: Project) -> None:
    """The image's Python lacks kubemigrate (here: the base interpreter, outside the venv)."""
    bare_python = Path(sys.base_prefix) / "bin" / "python3"
    result = incluster.inv(
        "db.upgrade", "--env", NS, KUBEMIGRATE_JOB_COMMAND=f"{bare_python} -m kubemigrate"
    )
    assert result.code == 1, result.output
    assert "has no kubemigrate: install it in the image" in result.stderr


@pytest.mark.parametrize("value", ["5e381927", "12345678", "0x1f", "true", "null", "1.5", ".inf"])
def test_strings_that_yaml_12_reads_otherwise_are_quoted(value: str) -> None:
    """A Job's run id is 8 hex digits: `5e381927` is a number to kubectl's YAML reader."""
    from kubemigrate.kubernetes.job_manifest import to_yaml

    assert to_yaml({"run": value}) == f"run: '{value}'\n"
    assert to_yaml({"run": "f2030d31309f"}) == "run: f2030d31309f\n"
