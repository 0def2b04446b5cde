"""5. Backup throughput on a database of at least 500 MB made of pgbench's tables:
`inv db.backup` against the bare `pg_dump -Fc` to a file, on the local target and on the k8s
target, where both sides run pg_dump in the pod through `kubectl exec`.

Two contents, same tables and size:
- with `filler` holding random hex text, which compresses as ordinary text does: pg_dump works
  for several seconds and the ratio shows the cost per byte. Backups are judged by these rows
  (target: at most 1.1x);
- as `pgbench -i` makes them: the accounts' `filler` is blank, the archive compresses about
  40:1 and pg_dump is done in under two seconds, so what a task pays once whatever the size
  (Python start-up and imports, the revision query, the archive check) weighs heavily. These
  rows are reported as fixed-cost figures, with no ratio target.
"""

import subprocess
import time
from collections.abc import Callable

from bench.cluster import POD, Cluster, cluster
from bench.timing import Result, Scratch, alternate, command, scratch

MiB = 1 << 20
ACCOUNTS_PER_SCALE = 100_000
# pgbench's own rows, with 84 characters of random hex in the accounts' filler.
RANDOM_FILLER = """
INSERT INTO pgbench_branches (bid, bbalance) SELECT b, 0 FROM generate_series(1, {scale}) b;
INSERT INTO pgbench_tellers (tid, bid, tbalance)
    SELECT t, (t - 1) / 10 + 1, 0 FROM generate_series(1, {scale} * 10) t;
INSERT INTO pgbench_accounts (aid, bid, abalance, filler)
    SELECT a, (a - 1) / {per_scale} + 1, 0,
           md5(random()::text) || md5(random()::text) || left(md5(random()::text), 20)
    FROM generate_series(1, {scale} * {per_scale}) a;
"""


def measure(repetitions: int, scale: int = 40) -> list[Result]:
    results: list[Result] = []
    with scratch() as project, cluster(project) as kube:
        contents = (
            ("pgbench data", _pgbench, "reported (fixed cost)"),
            ("random filler", _random_filler, "<= 1.1x"),
        )
        for content, fill, target in contents:
            size = fill(project, scale)
            local, in_pod = _time_both(project, kube, repetitions)
            label = f"{size / MiB:,.0f} MB of {content}"
            results += [
                Result(f"backup {label}, local: vs `pg_dump -Fc`", *local, target),
                Result(f"backup {label}, k8s: vs `kubectl exec ... pg_dump -Fc`", *in_pod, target),
            ]
    return results


def _time_both(
    project: Scratch, kube: Cluster, repetitions: int
) -> tuple[tuple[list[float], list[float]], tuple[list[float], list[float]]]:
    bare_dump = project.root.parent / "bare.dump"
    local = alternate(
        command(project.inv("db.backup"), project.root, project.env),
        command(
            [_program("pg_dump"), "-Fc", "-f", str(bare_dump), "-d", project.dsn],
            project.root,
            project.env,
        ),
        repetitions,
    )
    in_pod = alternate(
        command(project.inv("db.backup", "--env", "bench"), project.root, kube.env),
        _dump_in_pod(project, kube),
        repetitions,
    )
    return local, in_pod


def _program(name: str) -> str:
    from kubemigrate.postgres.binaries import program

    return program(name)


def _pgbench(project: Scratch, scale: int) -> int:
    """`pgbench -i` at `scale` (about 15 MB each), then the migrations; the size in bytes."""
    _run(_program("pgbench"), "-i", "-q", "-s", str(scale), project.dsn)
    return _migrated_size(project)


def _random_filler(project: Scratch, scale: int) -> int:
    """pgbench's tables at `scale` with random text in the accounts' filler; the size."""
    _run(_program("pgbench"), "-i", "-q", "-I", "dt", "-s", str(scale), project.dsn)
    rows = RANDOM_FILLER.format(scale=scale, per_scale=ACCOUNTS_PER_SCALE)
    _run(_program("psql"), "-q", "-v", "ON_ERROR_STOP=1", "-d", project.dsn, "-c", rows)
    _run(_program("pgbench"), "-i", "-q", "-I", "vp", "-s", str(scale), project.dsn)
    return _migrated_size(project)


def _migrated_size(project: Scratch) -> int:
    command(project.inv("db.upgrade"), project.root, project.env)()
    query = "SELECT pg_database_size(current_database())"
    return int(_run(_program("psql"), "-At", "-c", query, project.dsn))


def _run(*argv: str) -> str:
    result = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=1800)
    return result.stdout.strip()


def _dump_in_pod(project: Scratch, kube: Cluster) -> Callable[[], float]:
    dump = project.root.parent / "bare-pod.dump"
    argv = kube.kubectl("exec", "-i", POD, "--", "pg_dump", "-Fc", "-U", "postgres", "bench")

    def run() -> float:
        started = time.perf_counter()
        with dump.open("wb") as out:
            subprocess.run(argv, stdout=out, env=kube.env, check=True, timeout=1800)
        return time.perf_counter() - started

    return run
