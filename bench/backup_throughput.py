"""5. Backup throughput on a database of at least 500 MB made with pgbench: `inv db.backup`
against the bare `pg_dump -Fc` to a file (target: at most 1.1x), on the local target and on
the k8s target, where both sides run pg_dump in the pod through `kubectl exec`.

Each side is timed at two sizes (half and full scale): the full-size ratio includes what a
task pays once whatever the size (Python start-up and imports, the revision query, the archive
check); the ratio of the differences between the two sizes is the throughput alone.
"""

import subprocess
import time
from collections.abc import Callable

from bench.cluster import POD, Cluster, cluster
from bench.timing import Result, Scratch, alternate, command, scratch

MiB = 1 << 20


def measure(repetitions: int, scale: int = 40) -> list[Result]:
    results: list[Result] = []
    with scratch() as project, cluster(project) as kube:
        small_size = _fill(project, max(1, scale // 2))
        small = _time_both(project, kube, repetitions)
        size = _fill(project, scale)
        full = _time_both(project, kube, repetitions)
    label = f"{size / MiB:,.0f} MB"
    for where, bare in (("local", "`pg_dump -Fc`"), ("k8s", "`kubectl exec ... pg_dump -Fc`")):
        results.append(
            Result(f"backup {label}, {where}: `inv db.backup` vs {bare}", *full[where], "<= 1.1x")
        )
    growth = f"{small_size / MiB:,.0f} to {label}"
    for where in ("local", "k8s"):
        (ours_small, bare_small), (ours_full, bare_full) = small[where], full[where]
        results.append(
            Result(
                f"backup throughput, {where}: time added from {growth}",
                [b - a for a, b in zip(ours_small, ours_full, strict=True)],
                [b - a for a, b in zip(bare_small, bare_full, strict=True)],
                "<= 1.1x",
            )
        )
    return results


def _time_both(
    project: Scratch, kube: Cluster, repetitions: int
) -> dict[str, tuple[list[float], list[float]]]:
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
    return {"local": local, "k8s": in_pod}


def _program(name: str) -> str:
    from kubemigrate.embedded import program

    return program(name)


def _fill(project: Scratch, scale: int) -> int:
    """pgbench's tables at `scale` (about 15 MB each), then the migrations; the size in bytes."""
    subprocess.run(
        [_program("pgbench"), "-i", "-q", "-s", str(scale), project.dsn],
        check=True,
        capture_output=True,
        timeout=1800,
    )
    command(project.inv("db.upgrade"), project.root, project.env)()
    result = subprocess.run(
        [_program("psql"), "-At", "-c", "SELECT pg_database_size(current_database())", project.dsn],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(result.stdout.strip())


def _dump_in_pod(project: Scratch, kube: Cluster) -> Callable[[], float]:
    dump = project.root.parent / "bare-pod.dump"
    argv = kube.kubectl("exec", "-i", POD, "--", "pg_dump", "-Fc", "-U", "postgres", "bench")

    def run() -> float:
        started = time.perf_counter()
        with dump.open("wb") as out:
            subprocess.run(argv, stdout=out, env=kube.env, check=True, timeout=1800)
        return time.perf_counter() - started

    return run
