"""Migrations in the cluster, running the Job: `run` creates it (its manifest is
`kubemigrate.kubernetes.job_manifest`) with kubectl, streams its pod's log, and waits for Complete
or Failed by watching its pod (`kubectl get pods -l RUN --watch`) and reading the Job when the pod
ends, so a pod stuck in `CreateContainerConfigError` or `ImagePullBackOff` is a failure rather than
a wait. A Job that succeeded is deleted; one that failed is kept for inspection. Ctrl-C or SIGTERM
stops following, not the migration.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubemigrate.errors import ClusterError, KubemigrateError, MigrationError
from kubemigrate.kubernetes.job_manifest import CONTAINER, RUN, manifest
from kubemigrate.process import children

if TYPE_CHECKING:
    import sh

    from kubemigrate.kubernetes.kubectl import Kubectl
    from kubemigrate.settings.declared import Settings

POLL_INTERVAL = 0.2
WAIT_MARGIN = 120.0  # the task waits this much longer than the Job's own deadline
STUCK = {
    "CreateContainerConfigError": "its Secret or ConfigMap (or a key in it) is missing",
    "CreateContainerError": "its container cannot be created",
    "ErrImagePull": "its image cannot be pulled",
    "ImagePullBackOff": "its image cannot be pulled",
    "InvalidImageName": "its image name is invalid",
}


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


def run(
    settings: Settings,
    arguments: list[str],
    *,
    revision: str,
    values: dict[str, str] | None = None,
) -> None:
    """Run `python -m kubemigrate ARGUMENTS` as a Job and follow it to its end; `values`: more
    variables for its container (none of them secret)."""
    from kubemigrate.kubernetes.kubectl import Kubectl

    kubectl = Kubectl.from_settings(settings)
    job = manifest(settings, arguments, revision=revision, values=values)
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


def run_id_of(kubectl: Kubectl, name: str) -> str:
    """The run label of Job `name`, to follow it again."""
    job = kubectl.get("job", name, hint="`inv db.jobs` lists kubemigrate's Jobs")
    run_id = job.get("metadata", {}).get("labels", {}).get(RUN)
    if not run_id:
        raise ClusterError(f"Job {name!r} was not made by kubemigrate (it has no {RUN} label)")
    return str(run_id)
