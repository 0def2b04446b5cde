"""The bundled database in the cluster: a tunnel to it, its Secret and a Ready pod behind it.

`reach(settings, stack)` opens `kubectl port-forward` to the PostgreSQL behind a Service (or a pod
selector) and, at the same time, reads the credentials' Secret and finds a Ready database pod (where
pg_dump runs for backups). The port-forward starts from the main thread (see
`kubemigrate.process.children.die_with_parent`); the two lookups are plain blocking kubectl calls
run side by side in worker threads. The task waits for the slowest of the three rather than for
their sum, and the first failure stops the others.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

from kubemigrate.errors import SettingsError
from kubemigrate.kubernetes.kubectl import Kubectl, Secret
from kubemigrate.kubernetes.tunnel import PortForward
from kubemigrate.process import children
from kubemigrate.settings.declared import Settings


@dataclass(frozen=True)
class Reached:
    """What `reach` opened and found: the tunnel, the Secret (if one is configured) and the
    name of a Ready database pod."""

    tunnel: PortForward
    secret: Secret | None
    pod: str

    @property
    def port(self) -> int:
        assert self.tunnel.local_port is not None
        return self.tunnel.local_port


def reach(settings: Settings, stack: ExitStack) -> Reached:
    """Open the tunnel (kept open by `stack`), read the Secret and find a Ready pod, at once."""
    kubectl = Kubectl.from_settings(settings)
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        children.stopped_on_failure(),
        ExitStack() as opening,
    ):
        if settings.db_selector:  # a Ready pod found by its labels, then forwarded to
            secret = pool.submit(_secret, kubectl, settings)
            pod = kubectl.ready_pod(settings.db_selector)
            tunnel = _start_tunnel(opening, kubectl, f"pod/{pod}", settings)
        else:  # through the Service: kubectl maps its port and prefers Ready pods
            service = service_name(settings)
            tunnel = _start_tunnel(opening, kubectl, f"svc/{service}", settings)
            secret = pool.submit(_secret, kubectl, settings)
            pod = pool.submit(kubectl.ready_pod_behind, service).result()
        found = Reached(tunnel, secret.result(), pod)
        tunnel.ready()
        opening.pop_all()
    stack.callback(tunnel.close)
    print(
        f"Tunnel to {tunnel.resource}:{settings.db_remote_port} in {kubectl.where} "
        f"on 127.0.0.1:{found.port}",
        file=sys.stderr,
    )
    return found


def database_pod(settings: Settings, kubectl: Kubectl) -> str:
    """The name of a Ready database pod: by selector, else through the Service's selector."""
    if settings.db_selector:
        return kubectl.ready_pod(settings.db_selector)
    return kubectl.ready_pod_behind(service_name(settings))


def service_name(settings: Settings) -> str:
    if not settings.db_service:
        raise SettingsError("target k8s needs KUBEMIGRATE_DB_SERVICE or KUBEMIGRATE_DB_SELECTOR")
    return settings.db_service


def _start_tunnel(
    opening: ExitStack, kubectl: Kubectl, resource: str, settings: Settings
) -> PortForward:
    tunnel = PortForward(kubectl, resource, settings.db_remote_port, settings.tunnel_timeout)
    opening.callback(tunnel.close)
    tunnel.start()
    return tunnel


def _secret(kubectl: Kubectl, settings: Settings) -> Secret | None:
    return kubectl.secret(settings.db_secret) if settings.db_secret else None
