"""The Kubernetes measures' cluster: the project's Kubernetes API test server with a PostgreSQL
pod (played by the scratch project's PostgreSQL), its Service and a Secret, and an environment
`bench` in the scratch project that targets it through the real kubectl."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.timing import BIN, Scratch

if TYPE_CHECKING:
    from tests.kubeapi.api import KubeAPIServer

NAMESPACE = "bench"
SERVICE = "postgres"
POD = "postgres-0"
SECRET = "db-credentials"


@dataclass
class Cluster:
    api: KubeAPIServer
    kubeconfig: Path
    env: dict[str, str]  # the project's, for `--env bench`: no DATABASE_URL, a private cache

    def kubectl(self, *argv: str) -> list[str]:
        """The bare kubectl command a user would type, with the same kubeconfig and context."""
        return [
            str(BIN / "kubectl"),
            "--kubeconfig",
            str(self.kubeconfig),
            "--context",
            "bench",
            "--namespace",
            NAMESPACE,
            *argv,
        ]


@contextmanager
def cluster(project: Scratch) -> Iterator[Cluster]:
    """Serve the project's database as a pod in namespace `bench` and point `--env bench` at it."""
    from sqlalchemy.engine import make_url
    from tests.kubeapi.api import Container, KubeAPIServer

    from kubemigrate.postgres.binaries import bin_dir

    url = make_url(project.url)
    assert url.port is not None and url.database is not None
    with KubeAPIServer() as api:
        api.add_namespace(NAMESPACE)
        api.add_secret(
            NAMESPACE,
            SECRET,
            {"username": url.username or "", "password": "unused", "database": url.database},
        )
        container_env = {
            "PATH": f"{bin_dir()}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(url.port),
        }
        api.add_pod(
            NAMESPACE,
            POD,
            labels={"app": "postgres"},
            containers=[Container(name="postgres", ports={"postgresql": 5432}, env=container_env)],
            port_targets={5432: ("127.0.0.1", url.port)},
        )
        api.add_service(
            NAMESPACE,
            SERVICE,
            selector={"app": "postgres"},
            ports=[{"name": "postgresql", "port": 5432, "targetPort": "postgresql"}],
        )
        kubeconfig = api.write_kubeconfig(project.root.parent, context="bench")
        env = {k: v for k, v in project.env.items() if k != "DATABASE_URL"}
        env["KUBECACHEDIR"] = str(project.root.parent / "kube-cache")
        settings = (
            "KUBEMIGRATE_TARGET=k8s\n"
            f"KUBEMIGRATE_KUBECONFIG={kubeconfig}\n"
            f"KUBEMIGRATE_NAMESPACE={NAMESPACE}\n"
            f"KUBEMIGRATE_DB_SERVICE={SERVICE}\n"
            f"KUBEMIGRATE_DB_SECRET={SECRET}\n"
            "KUBEMIGRATE_DB_CONTAINER=postgres\n"
        )
        (project.root / ".env.bench").write_text(settings + "KUBEMIGRATE_KUBE_CONTEXT=bench\n")
        (project.root / ".env.bench-current").write_text(settings)  # the kubeconfig's context
        yield Cluster(api, kubeconfig, env)
