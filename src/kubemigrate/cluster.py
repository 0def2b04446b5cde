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
from kubemigrate.kube import Kubectl, KubectlError
from kubemigrate.settings import Settings
from kubemigrate.target import parse_url, url_from_parts
from kubemigrate.tunnel import PortForward

if TYPE_CHECKING:
    from sqlalchemy import URL


def tunnelled_url(settings: Settings, stack: ExitStack) -> tuple[URL, PortForward]:
    """Open a port-forward to the bundled database (kept open by `stack`); URL and tunnel."""
    kubectl = Kubectl.from_settings(settings)
    credentials = _credentials(settings, kubectl)
    resource = _forward_target(settings, kubectl)
    tunnel = stack.enter_context(
        PortForward(kubectl, resource, settings.db_remote_port, settings.tunnel_timeout)
    )
    print(
        f"Tunnel to {resource}:{settings.db_remote_port} in {kubectl.where} "
        f"on 127.0.0.1:{tunnel.local_port}",
        file=sys.stderr,
    )
    return credentials.set(host="127.0.0.1", port=tunnel.local_port), tunnel


def external_url(settings: Settings) -> URL:
    """The external database's URL from the Secret (host included)."""
    if not settings.db_secret:
        raise SettingsError(
            f"target external (environment {settings.environment}) needs DATABASE_URL, "
            "KUBEMIGRATE_DB_HOST or KUBEMIGRATE_DB_SECRET"
        )
    kubectl = Kubectl.from_settings(settings)
    url = _credentials(settings, kubectl)
    if not url.host:
        raise SettingsError(
            f"Secret {settings.db_secret!r} has no key {settings.secret_host_key!r} for the "
            "external database's host; add it or set KUBEMIGRATE_DB_HOST"
        )
    return url


def _credentials(settings: Settings, kubectl: Kubectl) -> URL:
    """User, password, database (and, if present, host and port) as a URL."""
    if not settings.db_secret:
        if settings.database_url:
            return parse_url(settings.database_url, settings.source("database_url"))
        return url_from_parts(
            host="",
            port=settings.db_port,
            user=settings.db_user,
            password=settings.db_password,
            database=settings.db_name,
        )
    values = kubectl.secret(settings.db_secret)
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


def _forward_target(settings: Settings, kubectl: Kubectl) -> str:
    """What to port-forward to: `svc/NAME`, or `pod/NAME` when a selector is configured.

    Either way a Ready pod must exist first, so that a database that is starting or failing is
    reported as such instead of as a tunnel that does not answer. Through the Service, kubectl
    maps the Service port to the pod's target port and prefers Ready pods itself.
    """
    pod = database_pod(settings, kubectl)
    return f"svc/{settings.db_service}" if not settings.db_selector else f"pod/{pod}"


def database_pod(settings: Settings, kubectl: Kubectl) -> str:
    """The name of a Ready database pod: by selector, else through the Service's selector."""
    if settings.db_selector:
        return kubectl.ready_pod(settings.db_selector)
    if not settings.db_service:
        raise SettingsError("target k8s needs KUBEMIGRATE_DB_SERVICE or KUBEMIGRATE_DB_SELECTOR")
    return kubectl.ready_pod(kubectl.service_selector(settings.db_service))
