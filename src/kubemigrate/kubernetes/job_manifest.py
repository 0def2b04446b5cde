"""Migrations in the cluster, the Job's manifest: a Kubernetes Job from the release's own image.

`manifest` builds the Job: the image, `env`, `envFrom` and ServiceAccount of the first container
of the first Deployment in `KUBEMIGRATE_DEPLOYMENTS`, as `kubectl kustomize` renders the
manifests (or `KUBEMIGRATE_JOB_IMAGE`); the credentials from the Secret through
`secretKeyRef`, so the password never leaves the cluster and kubemigrate never reads it; the
command `python -m kubemigrate upgrade REV`, which takes the same path as a local migration
(advisory lock, timeouts). `backoffLimit: 0` and `restartPolicy: Never`: a failed migration is
never retried blindly. `to_yaml` writes it as YAML 1.2 readers (kubectl, Helm) read it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubemigrate.errors import ClusterError, SettingsError
from kubemigrate.kubernetes.kubectl import kubectl_path
from kubemigrate.process import children, programs

if TYPE_CHECKING:
    from kubemigrate.settings.declared import Settings


CONTAINER = "migrate"


MANAGED_BY = "app.kubernetes.io/managed-by"


RUN = "kubemigrate.io/run"


REVISION = "kubemigrate.io/revision"


ENVIRONMENT = "kubemigrate.io/environment"


@dataclass(frozen=True)
class Release:
    """What the Job takes from the release's Deployment."""

    image: str
    container: dict[str, Any]
    service_account: str | None = None
    pull_secrets: list[dict[str, Any]] = field(default_factory=list)


def release(settings: Settings) -> Release:
    """The first container of the first Deployment in KUBEMIGRATE_DEPLOYMENTS, as the manifests
    render (`kubectl kustomize`, no cluster needed); KUBEMIGRATE_JOB_IMAGE overrides its image,
    and stands alone (a container of that image and nothing else) where the manifests have no
    such Deployment."""
    import yaml

    directory = settings.path(settings.manifests)
    alone = Release(image=settings.job_image, container={}) if settings.job_image else None
    if not directory.is_dir():
        if alone is not None:
            return alone
        raise SettingsError(
            f"no manifests directory at {directory} to take the migration Job's image from; set "
            "KUBEMIGRATE_MANIFESTS, or KUBEMIGRATE_JOB_IMAGE"
        )
    finished = children.run(
        programs.command(kubectl_path(settings.kubectl)), "kustomize", str(directory), timeout=60
    )
    if not finished.ok:
        raise ClusterError(finished.describe(f"kubectl kustomize {directory}"))
    name = settings.deployments[0] if settings.deployments else ""
    for document in yaml.safe_load_all(finished.output):
        if not isinstance(document, dict) or document.get("kind") != "Deployment":
            continue
        if document.get("metadata", {}).get("name") != name:
            continue
        pod = document.get("spec", {}).get("template", {}).get("spec", {})
        containers = pod.get("containers") or [{}]
        image = settings.job_image or containers[0].get("image")
        if not image:
            break
        return Release(
            image=image,
            container=containers[0],
            service_account=pod.get("serviceAccountName"),
            pull_secrets=pod.get("imagePullSecrets") or [],
        )
    if alone is not None:
        return alone
    raise SettingsError(
        f"the manifests in {directory} have no Deployment {name!r} with an image for the "
        "migration Job; set KUBEMIGRATE_DEPLOYMENTS or KUBEMIGRATE_JOB_IMAGE"
    )


def manifest(
    settings: Settings,
    arguments: list[str],
    *,
    revision: str,
    run_id: str | None = None,
    values: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The Job running `python -m kubemigrate ARGUMENTS` for the settings' environment, with
    `values` as more (plain) variables of its container."""
    found = release(settings)
    run_id = run_id or uuid.uuid4().hex[:8]
    labels = {
        "app.kubernetes.io/name": "kubemigrate",
        "app.kubernetes.io/part-of": _label(
            settings.deployments[0] if settings.deployments else ""
        ),
        MANAGED_BY: "kubemigrate",
        RUN: run_id,
        REVISION: _label(revision),
        ENVIRONMENT: _label(settings.environment),
    }
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": found.image,
        "command": [*settings.job_command, *arguments],
        "env": environment(settings, found.container)
        + [{"name": name, "value": text} for name, text in (values or {}).items()],
    }
    for key in ("envFrom", "workingDir", "resources", "imagePullPolicy", "volumeMounts"):
        if found.container.get(key):
            container[key] = found.container[key]
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if found.service_account:
        pod["serviceAccountName"] = found.service_account
    if found.pull_secrets:
        pod["imagePullSecrets"] = found.pull_secrets
    no_sidecar = {"sidecar.istio.io/inject": "false"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"kubemigrate-{_label(settings.environment)[:30]}-{run_id}",
            "namespace": settings.namespace,
            "labels": labels,
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": max(1, round(settings.job_deadline)),
            "ttlSecondsAfterFinished": max(0, round(settings.job_ttl)),
            "template": {
                "metadata": {"labels": {**labels, **no_sidecar}, "annotations": no_sidecar},
                "spec": pod,
            },
        },
    }


def environment(settings: Settings, container: dict[str, Any]) -> list[dict[str, Any]]:
    """The release container's `env`, then kubemigrate's own: the database reached directly
    from inside the cluster, its credentials by `secretKeyRef`, and the migration settings."""
    ours: dict[str, dict[str, Any]] = {}

    def value(name: str, text: str) -> None:
        ours[name] = {"name": name, "value": text}

    def secret(name: str, key: str, *, optional: bool = False) -> None:
        if not settings.db_secret:
            return
        ref = {"name": settings.db_secret, "key": key, **({"optional": True} if optional else {})}
        ours[name] = {"name": name, "valueFrom": {"secretKeyRef": ref}}

    value("KUBEMIGRATE_RUNNER", "local")
    value("KUBEMIGRATE_TARGET", "external")
    value("KUBEMIGRATE_DB_SECRET", "")
    if settings.secret_url_key:
        secret("DATABASE_URL", settings.secret_url_key)
    else:
        value("KUBEMIGRATE_DB_HOST", job_host(settings))
        value("KUBEMIGRATE_DB_PORT", str(settings.job_db_port or settings.db_remote_port))
        if settings.target == "external" and not settings.job_db_host:
            secret("KUBEMIGRATE_DB_HOST", settings.secret_host_key)
        secret("KUBEMIGRATE_DB_USER", settings.secret_user_key)
        secret("KUBEMIGRATE_DB_PASSWORD", settings.secret_password_key)
        secret("KUBEMIGRATE_DB_NAME", settings.secret_database_key, optional=True)
    for name in JOB_SETTINGS:
        setting = settings_value(settings, name)
        if setting is not None:
            value(name, setting)
    theirs = [e for e in container.get("env") or [] if e.get("name") not in ours]
    return [*theirs, *ours.values()]


# Settings the Job takes over from the environment's, so that it migrates as locally.
JOB_SETTINGS = (
    "KUBEMIGRATE_MIGRATIONS_CONFIG",
    "KUBEMIGRATE_EXPORT",
    "KUBEMIGRATE_DRIVER",
    "KUBEMIGRATE_CONNECT_TIMEOUT",
    "KUBEMIGRATE_LOCK_WAIT",
    "KUBEMIGRATE_LOCK_TIMEOUT",
    "KUBEMIGRATE_STATEMENT_TIMEOUT",
    "KUBEMIGRATE_LEDGER",
    "KUBEMIGRATE_LEDGER_SCHEMA",
)


def settings_value(settings: Settings, name: str) -> str | None:
    """The text of setting `name` when it is not its default (None: leave the image's)."""
    from kubemigrate.settings.declared import BY_NAME

    declared = BY_NAME[name]
    if settings.source(declared.attr) == "default":
        return None
    return settings.text(declared.attr)


def job_host(settings: Settings) -> str:
    """The database host as the Job sees it: KUBEMIGRATE_JOB_DB_HOST, else the Service's
    cluster DNS name (the bundled database) or the Secret's host (external)."""
    if settings.job_db_host:
        return settings.job_db_host
    service = settings.db_service or "postgres"
    return f"{service}.{settings.namespace}.svc"


def _label(text: str) -> str:
    """`text` as a label value (63 characters of [a-z0-9A-Z-_.], starting and ending alnum)."""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text)[:63]
    return cleaned.strip("-_.") or "none"


# Plain scalars that a YAML 1.2 reader (kubectl, Helm) takes for a number, a bool or null,
# while PyYAML (YAML 1.1) writes them unquoted: `5e381927`, a run id, is one.
NOT_A_STRING_TO_GO = re.compile(
    r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|0x[0-9a-fA-F]+|0o[0-7]+"
    r"|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)|true|True|TRUE|false|False|FALSE|null|Null|NULL|~"
)


def to_yaml(job: dict[str, Any]) -> str:
    """The Job as YAML that every reader takes as it is meant: a string that YAML 1.2 would
    read as something else is quoted."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def string(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "'" if NOT_A_STRING_TO_GO.fullmatch(value) else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, string)
    return str(yaml.dump(job, Dumper=Dumper, sort_keys=False, default_flow_style=False))
