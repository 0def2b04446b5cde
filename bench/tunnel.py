"""3. Tunnel: from a task's start to its first successful query through the tunnel.

Both sides run against the project's Kubernetes API test server with the real kubectl. The
task's side is measured twice: with the context named in the environment's settings (as CI
and `.env.<environment>` files should have it), and with the kubeconfig's current context,
which costs one more kubectl call (`config current-context`) before anything else starts.
Both are reported against the bare `kubectl port-forward` timed to its `Forwarding from` line.

The floor runs no kubemigrate code: the same port-forward with the two lookups a task makes
beside it (`get secret`, `get endpointslices`), all three bare kubectls started at once with
Popen, timed until the line and both lookups are in. It is the least any tool that reads the
Secret and checks for a Ready pod through kubectl can take here; on 2 cores shared with the
test API server, three kubectls (about 35 ms of CPU each) compete for the CPU.

The target is stated against the floor, not against the bare port-forward: kubemigrate's own
share over the floor is at most +35 ms, with the Ready-pod check kept. To compare the task
with the floor directly, the task (named context), the floor and the bare port-forward are
timed in one three-way rotation (each run in turn, after one untimed warm-up each), so every
pair of them is alternated directly and drift in the machine's load hits all three alike. The
rows "task vs port-forward", "floor vs port-forward" and "share over the floor" are three
comparisons of those same samples: no extra runs (one bare side fewer than two separate
alternations would take).
"""

import subprocess
import time
from collections.abc import Callable
from typing import Any

from bench.cluster import SECRET, SERVICE, Cluster, cluster
from bench.timing import PYTHON, REPO, Result, Scratch, alternate, rotate, scratch


def measure(repetitions: int) -> list[Result]:
    with scratch() as project, cluster(project) as kube:
        named, floor, bare = rotate(
            [_task(project, kube, "bench"), _kubectl(kube, lookups=True), _kubectl(kube)],
            repetitions,
        )
        current = alternate(_task(project, kube, "bench-current"), _kubectl(kube), repetitions)
    return [
        Result(
            "tunnel: task start to first query vs kubectl's `Forwarding from`",
            named,
            bare,
            "reported",
            difference=True,
        ),
        Result(
            "tunnel, with the kubeconfig's current context", *current, "reported", difference=True
        ),
        Result(
            "tunnel floor: bare port-forward with the two lookups beside it (no kubemigrate)",
            floor,
            bare,
            "reported",
            difference=True,
        ),
        Result(
            "tunnel: kubemigrate's share over the floor", named, floor, "<= +35 ms", difference=True
        ),
    ]


def _task(project: Scratch, kube: Cluster, environment: str) -> Callable[[], float]:
    def run() -> float:
        result = subprocess.run(
            [PYTHON, "-m", "bench.first_query", environment],
            cwd=project.root,
            env={**kube.env, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"the task failed: {result.stderr[-500:]}")
        return float(result.stdout.strip())

    return run


def _kubectl(kube: Cluster, lookups: bool = False) -> Callable[[], float]:
    """Bare `kubectl port-forward`, timed to its `Forwarding from` line; with `lookups`, the
    Secret and EndpointSlice reads started beside it and waited for too."""
    argv = kube.kubectl("port-forward", f"svc/{SERVICE}", ":5432", "--address", "127.0.0.1")
    reads = [
        kube.kubectl("get", "secret", SECRET, "-o", "json"),
        kube.kubectl(
            "get", "endpointslices", "-l", f"kubernetes.io/service-name={SERVICE}", "-o", "json"
        ),
    ]

    def run() -> float:
        started = time.perf_counter()
        process = subprocess.Popen(argv, env=kube.env, stdout=subprocess.PIPE, text=True)
        gets = [
            subprocess.Popen(read, env=kube.env, stdout=subprocess.DEVNULL)
            for read in (reads if lookups else [])
        ]
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            if "Forwarding from" not in line:
                raise RuntimeError(f"kubectl port-forward said {line!r}")
            if any(get.wait(60) != 0 for get in gets):
                raise RuntimeError("a bare kubectl lookup failed")
            return time.perf_counter() - started
        finally:
            children: list[subprocess.Popen[Any]] = [process, *gets]
            for child in children:
                if child.poll() is None:
                    child.terminate()
                child.wait(10)

    return run
