"""Databases in Kubernetes: credentials from a Secret, reached through a tunnel or directly.

- `k8s` (bundled): the PostgreSQL behind a Service (or pod selector) in the namespace, reached
  through `kubectl port-forward`; credentials from the Secret, else from DATABASE_URL or the
  KUBEMIGRATE_DB_* settings (whose host is then replaced by the tunnel's end).
- `external`: credentials, host included, from the Secret, reached directly.

Secret values stay in memory: they go into the URL handed to the database driver, never into
a command line, a file or a message.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from typing import TYPE_CHECKING

from kubemigrate.errors import SettingsError
from kubemigrate.kube import Kubectl, KubectlError, Pending
from kubemigrate.settings import Settings
from kubemigrate.target import parse_url, url_from_parts
from kubemigrate.tunnel import PortForward

if TYPE_CHECKING:
    from sqlalchemy import URL


def tunnelled_url(settings: Settings, stack: ExitStack) -> tuple[URL, PortForward, str]:
    """Open a port-forward to the bundled database (kept open by `stack`): the URL, the tunnel
    and the name of a Ready database pod (where pg_dump runs for backups).

    The tunnel, the Secret and the check for a Ready pod run at once, so the task waits for
    the slowest of them rather than for their sum; the first failure stops the others.
    """
    kubectl = Kubectl.from_settings(settings)
    with ExitStack() as opening:
        if settings.db_selector:  # a Ready pod found by its labels, then forwarded to
            secret = _start_secret(opening, kubectl, settings)
            pod = kubectl.ready_pod(settings.db_selector)
            tunnel = _start_tunnel(opening, kubectl, f"pod/{pod}", settings)
        else:  # through the Service: kubectl maps its port and prefers Ready pods
            service = _service_name(settings)
            tunnel = _start_tunnel(opening, kubectl, f"svc/{service}", settings)
            secret = _start_secret(opening, kubectl, settings)
            endpoints = kubectl.start_endpoints(service)
            opening.callback(endpoints.cancel)
            pod = kubectl.ready_pod_behind(service, endpoints)  # a Ready pod must back it
        credentials = _credentials(settings, kubectl, secret.result() if secret else None)
        tunnel.ready()
        opening.pop_all()
    stack.callback(tunnel.close)
    print(
        f"Tunnel to {tunnel.resource}:{settings.db_remote_port} in {kubectl.where} "
        f"on 127.0.0.1:{tunnel.local_port}",
        file=sys.stderr,
    )
    return credentials.set(host="127.0.0.1", port=tunnel.local_port), tunnel, pod


def _start_tunnel(
    opening: ExitStack, kubectl: Kubectl, resource: str, settings: Settings
) -> PortForward:
    tunnel = PortForward(kubectl, resource, settings.db_remote_port, settings.tunnel_timeout)
    opening.callback(tunnel.close)
    tunnel.start()
    return tunnel


def _start_secret(
    opening: ExitStack, kubectl: Kubectl, settings: Settings
) -> Pending[dict[str, str]] | None:
    if not settings.db_secret:
        return None
    secret = kubectl.start_secret(settings.db_secret)
    opening.callback(secret.cancel)
    return secret


def external_url(settings: Settings) -> URL:
    """The external database's URL from the Secret (host included)."""
    if not settings.db_secret:
        raise SettingsError(
            f"target external (environment {settings.environment}) needs DATABASE_URL, "
            "KUBEMIGRATE_DB_HOST or KUBEMIGRATE_DB_SECRET"
        )
    kubectl = Kubectl.from_settings(settings)
    url = _credentials(settings, kubectl, kubectl.secret(settings.db_secret))
    if not url.host:
        raise SettingsError(
            f"Secret {settings.db_secret!r} has no key {settings.secret_host_key!r} for the "
            "external database's host; add it or set KUBEMIGRATE_DB_HOST"
        )
    return url


def _credentials(settings: Settings, kubectl: Kubectl, values: dict[str, str] | None) -> URL:
    """User, password, database (and, if present, host and port) as a URL: from the Secret's
    `values` when there is a Secret, else from the settings."""
    if values is None:
        if settings.database_url:
            return parse_url(settings.database_url, settings.source("database_url"))
        return url_from_parts(
            host="",
            port=settings.db_port,
            user=settings.db_user,
            password=settings.db_password,
            database=settings.db_name,
        )
    origin = f"Secret {settings.db_secret!r}"

    def need(key: str) -> str:
        if key not in values:
            keys = ", ".join(sorted(values)) or "none"
            raise KubectlError(
                f"{origin} in {kubectl.where} has no key {key!r} (its keys: {keys}); fix the "
                "Secret or the KUBEMIGRATE_SECRET_*_KEY settings"
            )
        return values[key]

    if settings.secret_url_key:
        return parse_url(need(settings.secret_url_key), f"{origin} key {settings.secret_url_key!r}")
    port_text = values.get(settings.secret_port_key, str(settings.db_port))
    try:
        port = int(port_text)
    except ValueError:
        raise KubectlError(f"{origin} key {settings.secret_port_key!r} is not a port") from None
    return url_from_parts(
        host=values.get(settings.secret_host_key, settings.db_host or ""),
        port=port,
        user=need(settings.secret_user_key),
        password=need(settings.secret_password_key),
        database=values.get(settings.secret_database_key, settings.db_name),
    )


def database_pod(settings: Settings, kubectl: Kubectl) -> str:
    """The name of a Ready database pod: by selector, else through the Service's selector."""
    if settings.db_selector:
        return kubectl.ready_pod(settings.db_selector)
    return kubectl.ready_pod_behind(_service_name(settings))


def _service_name(settings: Settings) -> str:
    if not settings.db_service:
        raise SettingsError("target k8s needs KUBEMIGRATE_DB_SERVICE or KUBEMIGRATE_DB_SELECTOR")
    return settings.db_service
