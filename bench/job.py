"""Migrations in the cluster: a no-op `inv db.upgrade --in-cluster` (a Job from the release's
image, its log streamed, Complete or Failed read from the Job and its pod) against the bare
sequence a user would type, `kubectl apply -f job.yaml`, `kubectl wait --for=condition=Complete`
and `kubectl logs`, for the same Job on the project's Kubernetes API test server (target: at most
0.5x: with nothing pending, no Job is made). Then how soon the task returns after the Job's
container has ended, for a Job with one trivial step to run (target: 0.5 s); the container
writes the time it ended, as its last act.
"""

import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cluster import Cluster, cluster
from bench.timing import Result, Scratch, alternate, command, scratch

IMAGE = "ghcr.io/example/sample-app:bench"
FIRST = "f2030d31309f"  # the repository's revision


def measure(repetitions: int) -> list[Result]:
    with scratch() as project, cluster(project) as kube:
        stamp = Path(tempfile.mkdtemp(prefix="kubemigrate-bench-")) / "ended"
        _in_cluster(project, stamp)
        command(project.inv("db.upgrade", "--env", "bench"), project.root, kube.env)()
        job = _manifest(project, kube)
        ours, bare = alternate(
            command(project.inv("db.upgrade", "--env", "bench"), project.root, kube.env),
            _bare(kube, job),
            repetitions,
        )
        after = [_returned_after(project, kube, stamp) for _ in range(repetitions)]
    return [
        Result(
            "in-cluster no-op upgrade: `inv db.upgrade --in-cluster` vs kubectl apply, wait, logs",
            ours,
            bare,
            "<= 0.5x",
        ),
        Result(
            "in-cluster: the task returns after the Job's container ended",
            after,
            [0.0] * len(after),
            "<= +500 ms",
            difference=True,
        ),
    ]


def _in_cluster(project: Scratch, stamp: Path) -> None:
    """The release's Deployment (its image, working directory: the project) and an environment
    `bench` that migrates as a Job reaching the database directly."""
    from sqlalchemy.engine import make_url

    port = make_url(project.url).port
    k8s = project.root / "k8s"
    k8s.mkdir(exist_ok=True)
    (k8s / "kustomization.yaml").write_text("resources:\n  - web.yaml\n")
    (k8s / "web.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n"
        "  selector:\n    matchLabels: {app: web}\n  template:\n"
        "    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n"
        f"        - name: web\n          image: {IMAGE}\n          workingDir: {project.root}\n"
    )
    (project.root / "migrations" / "versions" / f"{TRIVIAL}.py").write_text(
        f'revision = "{TRIVIAL}"\ndown_revision = "{FIRST}"\n\n\n'
        "def upgrade() -> None:\n    pass\n\n\ndef downgrade() -> None:\n    pass\n"
    )
    ended = stamp.with_name("ended.sh")  # kubemigrate, then the time it ended
    ended.write_text(f'python -m kubemigrate "$@"; code=$?; date +%s.%N > {stamp}; exit $code\n')
    with (project.root / ".env.bench").open("a") as env:
        env.write(
            "KUBEMIGRATE_RUNNER=job\nKUBEMIGRATE_JOB_DB_HOST=127.0.0.1\n"
            f"KUBEMIGRATE_JOB_DB_PORT={port}\nKUBEMIGRATE_JOB_COMMAND=sh {ended}\n"
        )


def _manifest(project: Scratch, kube: Cluster) -> dict[str, Any]:
    """The Job as `inv db.job-manifest` prints it (the same spec the task creates)."""
    import yaml

    shown = subprocess.run(
        project.inv("db.job-manifest", "--env", "bench"),
        cwd=project.root,
        env=kube.env,
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(yaml.safe_load(shown.stdout))


def _bare(kube: Cluster, job: dict[str, Any]) -> Callable[[], float]:
    """kubectl apply -f job.yaml, wait for Complete, logs: a fresh name each run."""
    runs = iter(range(1_000_000))

    def run() -> float:
        name = f"bare-{next(runs)}"
        manifest = json.loads(json.dumps(job))
        manifest["metadata"]["name"] = name
        path = Path(tempfile.mkdtemp(prefix="kubemigrate-bench-")) / "job.json"
        path.write_text(json.dumps(manifest))
        started = time.perf_counter()
        for argv in (
            kube.kubectl("apply", "-f", str(path)),
            kube.kubectl("wait", "--for=condition=Complete", f"job/{name}", "--timeout=120s"),
            kube.kubectl("logs", f"job/{name}"),
        ):
            subprocess.run(argv, env=kube.env, capture_output=True, check=True, timeout=180)
        elapsed = time.perf_counter() - started
        subprocess.run(
            kube.kubectl("delete", "job", name, "--wait=false"), env=kube.env, capture_output=True
        )
        return elapsed

    return run


TRIVIAL = "b0b0b0b0b0b0"  # a step for the Job to run when one must run


def _step_back(project: Scratch) -> None:
    """The database one trivial step behind head, so that the next upgrade makes a Job."""
    import psycopg2

    connection = psycopg2.connect(project.dsn)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("UPDATE alembic_version SET version_num = %s", (FIRST,))
    finally:
        connection.close()


def _returned_after(project: Scratch, kube: Cluster, stamp: Path) -> float:
    """Seconds between the Job's container ending and the task returning."""
    _step_back(project)
    stamp.unlink(missing_ok=True)
    subprocess.run(
        project.inv("db.upgrade", "--env", "bench"),
        cwd=project.root,
        env=kube.env,
        capture_output=True,
        check=True,
    )
    returned = time.time()
    return returned - float(stamp.read_text().strip())
