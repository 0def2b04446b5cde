"""4. A chained release on the k8s target: `inv db.backup db.upgrade db.verify` opens exactly
one tunnel (port-forward sessions counted at the API server) and takes at most 1.3x the
sum of its steps' bare commands: `kubectl exec ... pg_dump -Fc` to a file, then one
`kubectl port-forward` held open for `alembic upgrade head`, `alembic current` and
`alembic check` (what verifying by hand takes)."""

import re
import subprocess
import time
from collections.abc import Callable

from bench.cluster import POD, SERVICE, Cluster, cluster
from bench.timing import BIN, Result, Scratch, alternate, command, scratch


def measure(repetitions: int) -> list[Result]:
    with scratch() as project, cluster(project) as kube:
        command(project.inv("db.upgrade"), project.root, project.env)()
        # `--env` after a task names that task's environment alone: the variable names it for
        # the three (the local one would start an embedded server in the scratch project).
        chain = command(
            project.inv("db.backup", "db.upgrade", "db.verify"),
            project.root,
            {**kube.env, "KUBEMIGRATE_ENV": "bench"},
        )
        forwards_before = _port_forwards(kube)
        ours, bare = alternate(chain, _bare_steps(project, kube), repetitions)
        # Each run of either side opens one; the warm-ups ran once each.
        opened = _port_forwards(kube) - forwards_before
        if opened != 2 * (repetitions + 1):
            raise RuntimeError(f"expected one tunnel per chain, saw {opened} port-forwards")
    return [
        Result(
            "chain `db.backup db.upgrade db.verify` (k8s, one tunnel) vs the bare steps' sum",
            ours,
            bare,
            "<= 0.70x",
        )
    ]


def _port_forwards(kube: Cluster) -> int:
    return sum(1 for kind, _ in kube.api.sessions if kind == "portforward")


def _bare_steps(project: Scratch, kube: Cluster) -> Callable[[], float]:
    dump = project.root.parent / "bare-chain.dump"
    alembic = str(BIN / "alembic")

    def run() -> float:
        started = time.perf_counter()
        with dump.open("wb") as out:
            subprocess.run(
                kube.kubectl("exec", "-i", POD, "--", "pg_dump", "-Fc", "-U", "postgres", "bench"),
                stdout=out,
                env=kube.env,
                check=True,
                timeout=600,
            )
        forward = subprocess.Popen(
            kube.kubectl("port-forward", f"svc/{SERVICE}", ":5432", "--address", "127.0.0.1"),
            env=kube.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert forward.stdout is not None
            match = re.search(r"127\.0\.0\.1:(\d+)", forward.stdout.readline())
            if match is None:
                raise RuntimeError("kubectl port-forward did not forward")
            env = {
                **kube.env,
                "DATABASE_URL": f"postgresql+psycopg2://postgres@127.0.0.1:{match[1]}/bench",
            }
            for step in (["upgrade", "head"], ["current"], ["check"]):
                command([alembic, *step], project.root, env)()
        finally:
            forward.terminate()
            forward.wait(10)
        return time.perf_counter() - started

    return run
