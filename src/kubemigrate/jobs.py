"""Migrations in the cluster: a Kubernetes Job from the release's own image.

`manifest` builds the Job: the image, `env`, `envFrom` and ServiceAccount of the first container
of the first Deployment in `KUBEMIGRATE_DEPLOYMENTS`, as `kubectl kustomize` renders the
manifests (or `KUBEMIGRATE_JOB_IMAGE`); the credentials from the Secret through
`secretKeyRef`, so the password never leaves the cluster and kubemigrate never reads it; the
command `python -m kubemigrate upgrade REV`, which takes the same path as a local migration
(advisory lock, timeouts). `backoffLimit: 0` and `restartPolicy: Never`: a failed migration is
never retried blindly.

`run` creates it with kubectl, streams its pod's log, and waits for Complete or Failed by
watching its pod (`kubectl get pods -l RUN --watch`) and reading the Job when the pod ends,
so a pod stuck in
`CreateContainerConfigError` or `ImagePullBackOff` is a failure rather than a wait. A Job that
succeeded is deleted; one that failed is kept for inspection. Ctrl-C or SIGTERM stops
following, not the migration.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubemigrate import children
from kubemigrate.errors import ClusterError, KubemigrateError, MigrationError, SettingsError

if TYPE_CHECKING:
    import sh

    from kubemigrate.kube import Kubectl
    from kubemigrate.settings import Settings

CONTAINER = "migrate"
MANAGED_BY = "app.kubernetes.io/managed-by"
RUN = "kubemigrate.io/run"
REVISION = "kubemigrate.io/revision"
ENVIRONMENT = "kubemigrate.io/environment"
POLL_INTERVAL = 0.2
WAIT_MARGIN = 120.0  # the task waits this much longer than the Job's own deadline
STUCK = {
    "CreateContainerConfigError": "its Secret or ConfigMap (or a key in it) is missing",
    "CreateContainerError": "its container cannot be created",
    "ErrImagePull": "its image cannot be pulled",
    "ImagePullBackOff": "its image cannot be pulled",
    "InvalidImageName": "its image name is invalid",
}


# -- the manifest --------------------------------------------------------------------------------


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
        children.command(_kubectl_path(settings)), "kustomize", str(directory), timeout=60
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


def _kubectl_path(settings: Settings) -> str:
    import shutil

    path = shutil.which(settings.kubectl)
    if path is None:
        raise ClusterError(
            f"kubectl not found: {settings.kubectl!r} is not on PATH; install kubectl or set "
            "KUBEMIGRATE_KUBECTL to its path"
        )
    return path


def manifest(
    settings: Settings, arguments: list[str], *, revision: str, run_id: str | None = None
) -> dict[str, Any]:
    """The Job running `python -m kubemigrate ARGUMENTS` for the settings' environment."""
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
        "env": environment(settings, found.container),
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
)


def settings_value(settings: Settings, name: str) -> str | None:
    """The text of setting `name` when it is not its default (None: leave the image's)."""
    from kubemigrate.settings import BY_NAME

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


# -- running and following ---------------------------------------------------------------------


@dataclass
class Seen:
    """The Job and its pod, as last read."""

    job: dict[str, Any] | None = None
    pod: dict[str, Any] | None = None

    @property
    def finished(self) -> str | None:
        """ "Complete" or "Failed" once the Job says so."""
        for condition in (self.job or {}).get("status", {}).get("conditions") or []:
            if condition.get("status") == "True" and condition.get("type") in (
                "Complete",
                "Failed",
            ):
                return str(condition["type"])
        return None

    def condition(self, kind: str) -> dict[str, Any]:
        for condition in (self.job or {}).get("status", {}).get("conditions") or []:
            if condition.get("type") == kind:
                return dict(condition)
        return {}

    @property
    def container(self) -> dict[str, Any]:
        for status in (self.pod or {}).get("status", {}).get("containerStatuses") or []:
            if status.get("name") == CONTAINER:
                return dict(status)
        return {}

    @property
    def started(self) -> bool:
        state = self.container.get("state", {})
        return "running" in state or "terminated" in state

    @property
    def waiting(self) -> tuple[str, str]:
        waiting = self.container.get("state", {}).get("waiting") or {}
        return str(waiting.get("reason", "")), str(waiting.get("message", ""))

    @property
    def terminated(self) -> dict[str, Any]:
        return dict(self.container.get("state", {}).get("terminated") or {})


class Watch:
    """`kubectl get KIND -l SELECTOR --watch -o json`: the latest of each object, as it changes
    (kubectl prints each as an indented JSON document ending with a `}` line)."""

    def __init__(self, kubectl: Kubectl, kind: str, selector: str, changed: threading.Event):
        self.changed = changed
        self.selector = selector
        self.objects: dict[str, dict[str, Any]] = {}
        self.lines: list[str] = []
        self.ended = False
        self.lock = threading.Lock()
        self.process = children.start(
            kubectl.command(),
            "get",
            kind,
            "-l",
            selector,
            "--watch",
            "-o",
            "json",
            on_out=self._line,
            on_err=lambda _: None,
            on_exit=self._exit,
        )

    def latest(self) -> dict[str, Any] | None:
        with self.lock:
            return list(self.objects.values())[-1] if self.objects else None

    def _line(self, text: str) -> None:
        self.lines.append(text)
        if text.rstrip("\n") != "}":
            return
        try:
            found = json.loads("".join(self.lines))
        except ValueError:
            return
        self.lines = []
        with self.lock:
            name = str(found.get("metadata", {}).get("name", ""))
            self.objects.pop(name, None)  # the latest last
            self.objects[name] = found
        self.changed.set()

    def _exit(self) -> None:
        self.ended = True
        self.changed.set()


class Follower:
    """A migration Job being followed: its pod watched, the pod's log printed as it comes. The
    Job itself is read only when the pod says something ended (or was quiet for a while): one
    watching kubectl and no polling while the migration runs."""

    def __init__(self, kubectl: Kubectl, name: str, run_id: str) -> None:
        self.kubectl = kubectl
        self.name = name
        self.lines: list[str] = []
        self.logs: sh.RunningCommand | None = None
        self.changed = threading.Event()
        self.pods = Watch(kubectl, "pods", f"{RUN}={run_id}", self.changed)

    def wait(self, timeout: float) -> bool:
        """Until the pod changes (True), or `timeout` seconds (False)."""
        changed = self.changed.wait(timeout)
        self.changed.clear()
        return changed

    def pod(self) -> dict[str, Any] | None:
        if not self.pods.ended:
            return self.pods.latest()
        found = self.kubectl.get("pods", selector=self.pods.selector)
        items = found.get("items") or []
        return dict(items[-1]) if items else None

    def job(self) -> dict[str, Any]:
        return self.kubectl.get("job", self.name)

    def job_finished(self, within: float) -> dict[str, Any]:
        """The Job once it has its Complete or Failed condition (the Job controller sets it
        just after the pod ends), or as it is after `within` seconds."""
        deadline = time.monotonic() + within
        while True:
            job = self.job()
            if Seen(job=job).finished or time.monotonic() >= deadline:
                return job
            time.sleep(POLL_INTERVAL)

    def follow_log(self, pod: str) -> None:
        """Start `kubectl logs -f` of the pod's container, its lines to stderr."""

        def line(text: str) -> None:
            self.lines = [*self.lines[-200:], text.rstrip("\n")]
            sys.stderr.write(text)
            sys.stderr.flush()

        self.logs = children.start(
            self.kubectl.command(),
            "logs",
            "-f",
            pod,
            "-c",
            CONTAINER,
            on_out=line,
            on_err=line,
            on_exit=lambda: None,
        )

    def log_ended(self, within: float) -> bool:
        return self.logs is None or children.exited(self.logs, within)

    def stop(self) -> None:
        """Stop the watch and the log (both told at once, then awaited)."""
        children.stop_all([self.pods.process, *([self.logs] if self.logs is not None else [])])


def create(kubectl: Kubectl, job: dict[str, Any]) -> None:
    """`kubectl create -f -` of the Job (the spec holds no secret: only secretKeyRef)."""
    finished = children.run(
        kubectl.command(), "create", "-f", "-", "-o", "name", input=json.dumps(job).encode()
    )
    if not finished.ok:
        raise kubectl.error(
            finished.errors.text, f"create the migration Job {job['metadata']['name']}"
        )


def run(settings: Settings, arguments: list[str], *, revision: str) -> None:
    """Run `python -m kubemigrate ARGUMENTS` as a Job and follow it to its end."""
    from kubemigrate.kube import Kubectl

    kubectl = Kubectl.from_settings(settings)
    job = manifest(settings, arguments, revision=revision)
    name, run_id = job["metadata"]["name"], job["metadata"]["labels"][RUN]
    follower = Follower(kubectl, name, run_id)  # its watch starts while the Job is made
    try:
        create(kubectl, job)
    except BaseException:
        follower.stop()
        raise
    image = job["spec"]["template"]["spec"]["containers"][0]["image"]
    print(f"Migration Job {name} created in {kubectl.where} (image {image})", file=sys.stderr)
    follow(settings, kubectl, name, run_id, follower)


def follow(
    settings: Settings,
    kubectl: Kubectl,
    name: str,
    run_id: str,
    follower: Follower | None = None,
) -> None:
    """Stream the Job's log and wait for Complete or Failed. A failure is a `MigrationError`
    with the container's exit code; Ctrl-C or SIGTERM stops following (the Job goes on) with
    a `KubemigrateError` of exit code 130 or 143."""
    follower = follower or Follower(kubectl, name, run_id)
    deadline = time.monotonic() + settings.job_deadline + WAIT_MARGIN
    quiet = True  # read the Job at once: following again, it may have ended already
    try:
        while True:
            seen = Seen(pod=follower.pod())
            if seen.pod is not None and follower.logs is None and seen.started:
                follower.follow_log(seen.pod["metadata"]["name"])
            _refuse_stuck(settings, kubectl, name, seen)
            ended = bool(seen.terminated) or bool(
                (seen.pod or {}).get("metadata", {}).get("deletionTimestamp")
            )
            succeeded = seen.terminated.get("exitCode") == 0  # with backoffLimit 0: Complete
            if ended or quiet:
                if not succeeded:
                    seen.job = follower.job_finished(within=10 if ended else 0)
                outcome = "Complete" if succeeded else seen.finished
                if outcome is not None:
                    follower.log_ended(within=2)
                    follower.stop()  # before the Job's deletion, which the watch would report
                    _end(settings, kubectl, name, seen, outcome, follower.lines)
                    return
            if time.monotonic() > deadline:
                raise MigrationError(
                    f"gave up waiting for the migration Job {name} after "
                    f"{settings.job_deadline + WAIT_MARGIN:g}s; {_commands(settings, name)}"
                )
            quiet = not follower.wait(timeout=5.0)
    except KeyboardInterrupt as exc:
        code = int(getattr(exc, "exit_code", 130))
        raise KubemigrateError(
            f"stopped following; the migration Job {name} goes on in {kubectl.where}. "
            f"{_commands(settings, name)}",
            code,
        ) from None
    finally:
        follower.stop()


def _commands(settings: Settings, name: str) -> str:
    env = f" --env {settings.environment}"
    return (
        f"Follow it with `inv db.job {name} --follow{env}`, cancel it with "
        f"`inv db.job {name} --cancel{env}`"
    )


def _refuse_stuck(settings: Settings, kubectl: Kubectl, name: str, seen: Seen) -> None:
    """A pod that cannot start is a failure: delete the Job (nothing ran) and say why."""
    reason, message = seen.waiting
    if reason not in STUCK:
        return
    delete(kubectl, name)
    detail = f": {message}" if message else ""
    raise MigrationError(
        f"the migration Job {name} could not start, {STUCK[reason]} ({reason}{detail}); "
        "nothing ran, and the Job was deleted"
    )


def _end(
    settings: Settings,
    kubectl: Kubectl,
    name: str,
    seen: Seen,
    outcome: str,
    lines: list[str],
) -> None:
    if outcome == "Complete":
        delete(kubectl, name)
        print(f"Migration Job {name} completed (deleted).", file=sys.stderr)
        return
    keep = f"the Job is kept: `kubectl logs job/{name} -n {kubectl.namespace}`"
    failed = seen.condition("Failed")
    terminated = seen.terminated
    code = int(terminated.get("exitCode", 1) or 1)
    if failed.get("reason") == "DeadlineExceeded":
        raise MigrationError(
            f"the migration Job {name} ran longer than KUBEMIGRATE_JOB_DEADLINE "
            f"({settings.job_deadline:g}s) and was stopped; PostgreSQL rolled back the migration "
            f"in progress. Raise the setting for long migrations; {keep}",
            code,
        )
    if terminated.get("reason") == "OOMKilled":
        raise MigrationError(
            f"the migration Job {name} ran out of memory (OOMKilled); PostgreSQL rolled back the "
            f"migration in progress. Raise the container's memory limit; {keep}",
            code,
        )
    said = _last_error(lines)
    if "No module named kubemigrate" in said or "No module named 'kubemigrate'" in said:
        raise MigrationError(
            f"the image of the migration Job {name} has no kubemigrate: install it in the image "
            f"(see the README's section on the cluster); {keep}",
            code,
        )
    raise MigrationError(
        f"the migration failed in the cluster (exit code {code}): {said}; {keep}", code
    )


def _last_error(lines: list[str]) -> str:
    useful = [line for line in lines if line.strip()]
    errors = [line for line in useful if line.lstrip().lower().startswith(("error", "fatal"))]
    chosen = (errors or useful or ["no log"])[-1].strip()
    return chosen.removeprefix("error: ")


def delete(kubectl: Kubectl, name: str) -> None:
    """Delete the Job and its pods (in the background, as kubectl does by default)."""
    kubectl.run(
        "delete", "job", name, "--ignore-not-found", "--wait=false", what=f"delete Job {name}"
    )


def cancel(kubectl: Kubectl, name: str, run_id: str, wait: float = 60) -> bool:
    """Delete the Job and wait (up to `wait` seconds) for its pod to stop; whether it did."""
    delete(kubectl, name)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if not kubectl.get("pods", selector=f"{RUN}={run_id}").get("items"):
            return True
        time.sleep(POLL_INTERVAL)
    return False


def listed(kubectl: Kubectl) -> list[dict[str, Any]]:
    """kubemigrate's Jobs in the namespace, oldest first."""
    found = kubectl.get("jobs", selector=f"{MANAGED_BY}=kubemigrate")
    items = list(found.get("items", []))
    return sorted(items, key=lambda job: str(job.get("metadata", {}).get("creationTimestamp", "")))


def describe(job: dict[str, Any]) -> tuple[str, str, str, str]:
    """Name, state, revision and age of a Job, for `inv db.jobs`."""
    seen = Seen(job=job)
    status = job.get("status", {})
    state = seen.finished or ("Running" if status.get("active") else "Pending")
    if state == "Failed":
        state += f" ({seen.condition('Failed').get('reason', '')})".replace(" ()", "")
    labels = job.get("metadata", {}).get("labels", {})
    return (
        str(job.get("metadata", {}).get("name", "")),
        state,
        str(labels.get(REVISION, "")),
        _age(str(job.get("metadata", {}).get("creationTimestamp", ""))),
    )


def _age(stamp: str) -> str:
    from datetime import UTC, datetime

    try:
        created = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "?"
    seconds = int((datetime.now(UTC) - created).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def run_id_of(kubectl: Kubectl, name: str) -> str:
    """The run label of Job `name`, to follow it again."""
    job = kubectl.get("job", name, hint="`inv db.jobs` lists kubemigrate's Jobs")
    run_id = job.get("metadata", {}).get("labels", {}).get(RUN)
    if not run_id:
        raise ClusterError(f"Job {name!r} was not made by kubemigrate (it has no {RUN} label)")
    return str(run_id)
