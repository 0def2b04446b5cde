"""The kubelet and the Job controller of the test server: Job pods run as local processes.

`prepare_job` defaults a new Job as the API server does (uid, `spec.selector`, the
`controller-uid` / `job-name` labels, both plain and `batch.kubernetes.io/`), `job_pod` makes
the Pod the controller would create (`<job>-<5 chars>`, owned by the Job). The server's Job
controller (api.py) counts its pods and writes the Job's status and conditions.

A `PodRun` plays the kubelet for one pod; each container is a `ContainerRun`:

- waiting `ContainerCreating` for `node.start_delay` seconds; an image in
  `node.unpullable_images` then waits `ErrImagePull`, then `ImagePullBackOff`; a missing
  Secret, ConfigMap or key waits `CreateContainerConfigError` with the kubelet's message. Both
  are retried every `RETRY_SECONDS`, so arranging the image or the object later lets it start.
- then a local process in its own session (a Ctrl-C in the test's terminal does not reach it):
  argv `command` (else the image's entry in `node.entrypoints`) + `args`, `$(VAR)` expanded as
  the kubelet does; cwd `workingDir` (else the server's); environment PATH, HOME and LANG of
  the server, `node.base_env`, HOSTNAME, then the container's `envFrom` and `env` (values,
  `secretKeyRef`, `configMapKeyRef`, `fieldRef`, `optional` honoured). A missing executable
  or directory ends it `StartError` (exit code 128).
- stdout and stderr share one pipe, whose lines form its log in the order they were written.
- it ends `Completed` (exit 0) or `Error`; `stop` sends SIGTERM and SIGKILL after a grace period
  to the whole process group; `oom_kill` sends SIGKILL and reports `OOMKilled`, 137. A container
  stopped before it started ends `ContainerStatusUnknown`, as the kubelet reports it.

Only what a migration Job needs: no init containers, no container restarts (`OnFailure` acts as
`Never`), one pod at a time (`completions` and `parallelism` are 1).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import os
import random
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Protocol

ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes draws generated name suffixes from
RETRY_SECONDS = 0.5  # how often a waiting container checks again for its image or config
CHUNK = 1 << 16
Line = tuple[float, bytes]  # when it came, and the line (with its newline)
COMPLETE = ("CompletionsReached", "Reached expected number of succeeded pods")
BACKOFF = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE = ("DeadlineExceeded", "Job was active longer than specified deadline")


class Node(Protocol):
    """What a pod run needs from the server: its settings, the stored objects, a status sink."""

    start_delay: float
    base_env: dict[str, str]
    unpullable_images: set[str]
    entrypoints: dict[str, list[str]]

    def lookup(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    def pod_changed(self, run: PodRun) -> None: ...


class ConfigError(Exception):
    """Why a container cannot be created yet: its waiting reason and the kubelet's message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


# -- the Job controller's pure parts -------------------------------------------------------------


def prepare_job(job: dict[str, Any]) -> list[tuple[str, str]]:
    """Default a new Job in place as the API server does; the (field, message) problems found."""
    spec = job.setdefault("spec", {})
    template = spec.setdefault("template", {})
    pod_spec = template.setdefault("spec", {})
    problems = []
    if not pod_spec.get("containers"):
        problems.append(("spec.template.spec.containers", "Required value"))
    restart = pod_spec.get("restartPolicy", "Always")
    if restart not in ("OnFailure", "Never"):
        problems.append(
            (
                "spec.template.spec.restartPolicy",
                f'Unsupported value: "{restart}": supported values: "OnFailure", "Never"',
            )
        )
    if problems:
        return problems
    meta = job["metadata"]
    meta["uid"] = uid = str(uuid.uuid4())
    for key, value in (
        ("parallelism", 1),
        ("completions", 1),
        ("backoffLimit", 6),
        ("completionMode", "NonIndexed"),
        ("suspend", False),
        ("podReplacementPolicy", "TerminatingOrFailed"),
    ):
        spec.setdefault(key, value)
    if not spec.get("manualSelector"):
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        for prefix in ("batch.kubernetes.io/", ""):
            labels[f"{prefix}controller-uid"] = uid
            labels[f"{prefix}job-name"] = meta["name"]
    if not meta.get("labels"):
        meta["labels"] = dict(template.get("metadata", {}).get("labels", {}))
    job["status"] = {}
    return []


def job_pod(job: dict[str, Any], taken: set[str]) -> dict[str, Any]:
    """The Pod the Job controller creates for `job`, with a name not in `taken`."""
    meta = job["metadata"]
    while (name := f"{meta['name']}-{''.join(random.choices(ALPHABET, k=5))}") in taken:
        pass
    template = copy.deepcopy(job["spec"]["template"])
    template_meta = template.get("metadata", {})
    spec = template["spec"]
    spec.setdefault("serviceAccountName", "default")
    spec["nodeName"] = "kubeapi-node"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "generateName": f"{meta['name']}-",
            "namespace": meta["namespace"],
            "labels": dict(template_meta.get("labels", {})),
            "annotations": dict(template_meta.get("annotations", {})),
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
        "status": {
            "phase": "Pending",
            "qosClass": "BestEffort",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [
                _container_status(c, {"waiting": {"reason": "ContainerCreating"}})
                for c in spec["containers"]
            ],
        },
    }


def condition(kind: str, reason: str, message: str) -> dict[str, Any]:
    """A Job condition that has just become true."""
    now = timestamp()
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": now,
        "lastTransitionTime": now,
    }


def finished(job: dict[str, Any]) -> bool:
    """Whether the Job has its final condition, Complete or Failed."""
    conditions = job.get("status", {}).get("conditions", [])
    return any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in conditions)


# -- the container's environment -----------------------------------------------------------------


def container_env(container: dict[str, Any], pod: dict[str, Any], node: Node) -> dict[str, str]:
    """The variables the kubelet gives the container (`envFrom`, then `env`); ConfigError if
    a Secret, ConfigMap or key is missing and not optional."""
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        plural, ref = (
            ("secrets", source["secretRef"])
            if "secretRef" in source
            else ("configmaps", source.get("configMapRef", {}))
        )
        values = _source(node, plural, namespace, ref)
        for key, value in (values or {}).items():
            env[source.get("prefix", "") + key] = value
    for var in container.get("env", []):
        if var.get("value"):
            env[var["name"]] = expand(var["value"], env)
            continue
        value_from = var.get("valueFrom")
        if not value_from:
            env[var["name"]] = ""
            continue
        if "fieldRef" in value_from:
            env[var["name"]] = _field(pod, value_from["fieldRef"].get("fieldPath", ""))
            continue
        secret = "secretKeyRef" in value_from
        ref = value_from["secretKeyRef" if secret else "configMapKeyRef"]
        values = _source(node, "secrets" if secret else "configmaps", namespace, ref)
        if values is None:
            continue  # optional and missing
        if ref.get("key") not in values:
            if ref.get("optional"):
                continue
            kind = "Secret" if secret else "ConfigMap"
            raise ConfigError(
                "CreateContainerConfigError",
                f"couldn't find key {ref.get('key')} in {kind} {namespace}/{ref.get('name')}",
            )
        env[var["name"]] = values[ref["key"]]
    return env


def _source(node: Node, plural: str, namespace: str, ref: dict[str, Any]) -> dict[str, str] | None:
    """The values of a Secret (decoded) or ConfigMap; None if it is missing but optional."""
    obj = node.lookup(plural, namespace, ref.get("name", ""))
    if obj is None:
        if ref.get("optional"):
            return None
        kind = "secret" if plural == "secrets" else "configmap"
        raise ConfigError("CreateContainerConfigError", f'{kind} "{ref.get("name")}" not found')
    if plural == "configmaps":
        return dict(obj.get("data") or {})
    values = {
        k: base64.b64decode(v).decode("utf-8", "surrogateescape")
        for k, v in (obj.get("data") or {}).items()
    }
    return {**values, **(obj.get("stringData") or {})}


def _field(pod: dict[str, Any], path: str) -> str:
    """A `fieldRef` (downward API) value of the pod."""
    meta = pod["metadata"]
    if match := re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path):
        return str((meta.get(match[1]) or {}).get(match[2], ""))
    values = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": pod["spec"].get("nodeName"),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName"),
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
    }
    return str(values.get(path) or "")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined variables are replaced, `$$` is `$`, anything
    else stays as written."""

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        return env.get(match[1], match[0])

    return re.sub(r"\$\$|\$\(([^)]*)\)", replace, text)


# -- the kubelet ---------------------------------------------------------------------------------


class PodRun:
    """The kubelet's work for one pod: its containers, their states and logs, the pod's status."""

    def __init__(self, node: Node, pod: dict[str, Any]) -> None:
        self.node = node
        self.pod = copy.deepcopy(pod)
        self.namespace = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.uid = pod["metadata"]["uid"]
        self.started_at = timestamp()
        self.containers = [ContainerRun(self, c) for c in pod["spec"]["containers"]]
        self.task: asyncio.Future[Any] | None = None

    def start(self) -> None:
        """Start the containers (on the server's loop)."""
        self.task = asyncio.gather(*(c.run() for c in self.containers))

    def stop(self, grace: float) -> None:
        """Stop every container: SIGTERM, then SIGKILL after `grace` seconds (on the loop)."""
        for container in self.containers:
            container.stop(grace)

    @property
    def finished(self) -> bool:
        return all(c.ended for c in self.containers)

    def container(self, name: str) -> ContainerRun | None:
        return next((c for c in self.containers if c.name == name), None)

    def status(self) -> dict[str, Any]:
        """The pod's status as the kubelet reports it."""
        states = [c.state for c in self.containers]
        if any("waiting" in s for s in states):
            phase = "Pending"
        elif any("running" in s for s in states):
            phase = "Running"
        elif all(s["terminated"]["exitCode"] == 0 for s in states):
            phase = "Succeeded"
        else:
            phase = "Failed"
        ready = phase == "Running" and all("running" in s for s in states)
        unready = [c.name for c in self.containers if "running" not in c.state]
        if ready:
            why = {}
        elif phase in ("Succeeded", "Failed"):
            why = {"reason": "PodCompleted"}
        else:
            why = {
                "reason": "ContainersNotReady",
                "message": f"containers with unready status: [{' '.join(unready)}]",
            }
        flag = "True" if ready else "False"
        return {
            "phase": phase,
            "conditions": [
                {"type": "PodReadyToStartContainers", "status": "True"},
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": flag, **why},
                {"type": "ContainersReady", "status": flag, **why},
                {"type": "PodScheduled", "status": "True"},
            ],
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.started_at,
            "qosClass": "BestEffort",
            "containerStatuses": [c.status() for c in self.containers],
        }


class ContainerRun:
    """One container as a local process: its state, its log, and the means to stop it."""

    def __init__(self, pod: PodRun, spec: dict[str, Any]) -> None:
        self.pod, self.spec = pod, spec
        self.name: str = spec["name"]
        self.state: dict[str, Any] = {"waiting": {"reason": "ContainerCreating"}}
        self.log: list[Line] = []  # stdout and stderr, in the order the lines came
        self.ended = False  # terminated: no more lines will come
        self.pid: int | None = None
        self.container_id = ""
        self._process: asyncio.subprocess.Process | None = None
        self._changed = asyncio.Event()
        self._stop = asyncio.Event()
        self._oom = False
        self._kill: asyncio.TimerHandle | None = None

    def status(self) -> dict[str, Any]:
        return _container_status(self.spec, self.state, self.container_id)

    # -- running ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Wait for the image and the config, run the process, record how it ended."""
        try:
            argv, env, cwd = await self._prepare()
        except _Stopped:
            self._end(
                {
                    "exitCode": 137,
                    "reason": "ContainerStatusUnknown",
                    "message": "The container could not be located when the pod was terminated",
                }
            )
            return
        self.container_id = f"containerd://{uuid.uuid4().hex}{uuid.uuid4().hex}"
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,  # one pipe: lines keep the order written
                start_new_session=True,
            )
        except OSError as exc:
            message = _start_error(exc, argv[0], cwd)
            self._end({"exitCode": 128, "reason": "StartError", "message": message})
            return
        self._process, self.pid = process, process.pid
        started = timestamp()
        self._set({"running": {"startedAt": started}})
        if self._stop.is_set():
            self._signal(signal.SIGKILL)
        assert process.stdout is not None
        reader = asyncio.ensure_future(self._pump(process.stdout))
        code = await process.wait()
        self._signal_group(signal.SIGKILL)  # what the process left in its group goes with it
        _, pending = await asyncio.wait({reader}, timeout=2)
        for task in pending:
            task.cancel()
        if self._kill is not None:
            self._kill.cancel()
        exit_code = code if code >= 0 else 128 - code
        reason = "OOMKilled" if self._oom else "Completed" if exit_code == 0 else "Error"
        self._end({"exitCode": exit_code, "reason": reason, "startedAt": started})

    async def _prepare(self) -> tuple[list[str], dict[str, str], str | None]:
        """argv, environment and cwd, once the image is pulled and the config resolves."""
        node, image = self.pod.node, self.spec.get("image", "")
        await self._sleep(node.start_delay)
        if image in node.unpullable_images:
            message = f'failed to pull and unpack image "{image}": {image}: not found'
            self._set({"waiting": {"reason": "ErrImagePull", "message": message}})
            await self._sleep(node.start_delay)
        while image in node.unpullable_images:
            message = f'Back-off pulling image "{image}"'
            self._set({"waiting": {"reason": "ImagePullBackOff", "message": message}})
            await self._sleep(RETRY_SECONDS)
        while True:
            try:
                declared = container_env(self.spec, self.pod.pod, node)
                argv = [
                    expand(part, declared)
                    for part in (self.spec.get("command") or node.entrypoints.get(image, []))
                    + self.spec.get("args", [])
                ]
                if not argv:
                    raise ConfigError(
                        "CreateContainerError",
                        "failed to generate container spec: no command specified",
                    )
                break
            except ConfigError as problem:
                self._set({"waiting": {"reason": problem.reason, "message": problem.message}})
                await self._sleep(RETRY_SECONDS)
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
        env.update(node.base_env)
        env["HOSTNAME"] = self.pod.name
        env.update(declared)
        return argv, env, self.spec.get("workingDir") or None

    async def _sleep(self, seconds: float) -> None:
        """Sleep, unless the container is stopped first (then _Stopped)."""
        if not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), seconds)
        if self._stop.is_set():
            raise _Stopped

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        """Lines of stdout and stderr into the log as they arrive."""
        rest = b""
        while chunk := await stream.read(CHUNK):
            *lines, rest = (rest + chunk).split(b"\n")
            for line in lines:
                self._append(line + b"\n")
        if rest:
            self._append(rest)

    def _append(self, line: bytes) -> None:
        self.log.append((time.time(), line))
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _set(self, state: dict[str, Any]) -> None:
        if state != self.state:
            self.state = state
            self.pod.node.pod_changed(self.pod)

    def _end(self, terminated: dict[str, Any]) -> None:
        self.ended = True
        self._notify()
        if self.container_id:
            terminated["containerID"] = self.container_id
        self._set({"terminated": {**terminated, "finishedAt": timestamp()}})

    # -- stopping --------------------------------------------------------------------------------

    def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; a container not started never starts."""
        self._stop.set()
        if self._process is None or self._process.returncode is not None:
            return
        if grace <= 0:
            self._signal(signal.SIGKILL)
        elif self._kill is None:
            self._signal(signal.SIGTERM)
            loop = asyncio.get_running_loop()
            self._kill = loop.call_later(grace, self._signal, signal.SIGKILL)

    def oom_kill(self) -> None:
        """SIGKILL, reported as the kernel's OOM killer's work."""
        if self._process is None or self._process.returncode is not None:
            raise ValueError(f"container {self.name} of pod {self.pod.name} is not running")
        self._oom = True
        self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        if self._process is not None and self._process.returncode is None:
            self._signal_group(sig)

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)

    # -- the log ---------------------------------------------------------------------------------

    async def read(self, follow: bool, tail: int | None) -> AsyncIterator[list[Line]]:
        """The log's lines (the last `tail` of them), then, with `follow`, new ones as they
        arrive, until the container has ended."""
        sent = max(0, len(self.log) - tail) if tail is not None else 0
        while True:
            changed = self._changed
            if sent < len(self.log):
                batch, sent = self.log[sent:], len(self.log)
                yield batch
                continue
            if not follow or self.ended:
                return
            await changed.wait()


class _Stopped(Exception):
    """The container was stopped before its process started."""


def _container_status(
    spec: dict[str, Any], state: dict[str, Any], container_id: str = ""
) -> dict[str, Any]:
    image = spec.get("image", "")
    running = "running" in state
    status: dict[str, Any] = {
        "name": spec["name"],
        "image": image,
        "imageID": f"docker.io/{image}@sha256:{'0' * 64}" if container_id else "",
        "ready": running,
        "started": running,
        "restartCount": 0,
        "state": state,
        "lastState": {},
    }
    if container_id:
        status["containerID"] = container_id
    return status


def _start_error(exc: OSError, program: str, cwd: str | None) -> str:
    """The runtime's message for a process that could not start."""
    if cwd and not os.path.isdir(cwd):
        detail = f'chdir to cwd ("{cwd}") set in config.json failed: no such file or directory'
    elif isinstance(exc, FileNotFoundError) and os.sep not in program:
        detail = f'exec: "{program}": executable file not found in $PATH'
    else:
        detail = f'exec: "{program}": {(exc.strerror or str(exc)).lower()}'
    return f"failed to create containerd task: unable to start container process: {detail}"


def timestamp(at: float | None = None, *, nano: bool = False) -> str:
    """RFC 3339 in UTC, as Kubernetes writes times (`nano`: as log timestamps are written)."""
    moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    if nano:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
