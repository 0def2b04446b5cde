"""A Kubernetes API server for tests, spoken to by the real kubectl over HTTP on 127.0.0.1.

Tests arrange objects (namespaces, Secrets, Pods, Services, Deployments) and then run real
kubectl commands against it, through a kubeconfig it writes. It serves what kubectl requests:
discovery (`/api`, `/apis`, `/api/v1`, `/apis/apps/v1`, `/version`, `/openapi/v3`), get and
list with label and field selectors, EndpointSlices derived from Services and their pods (as
the endpoint-slice controller keeps them; read-only), create and strategic-merge patch (for
`kubectl apply`), watches (for `kubectl rollout status`, including the watch-list protocol of
kubectl 1.37), and the upgraded connections behind `port-forward` and `exec` (see streams.py and
spdy.py).

Errors are real `Status` objects, so kubectl prints its usual messages. kubectl withholds
bearer tokens over plain HTTP, so requests without one are served; `refuse_credentials` makes
every request a 401, as for expired credentials. The WebSocket upgrade kubectl tries first is
refused with a 400, so it falls back to SPDY/3.1, as it does against servers without
WebSocket support.

A pod's containers are played by local processes: a port-forward reaches the address given
in `port_targets`; an exec runs the command locally with the container's environment.
kubectl keeps a discovery cache: give each test its own (`KUBECACHEDIR` or `--cache-dir`).

`batch/v1` Jobs (jobs.py): a new Job gets its Pod, whose containers run as local processes as
a kubelet would run them; the Job's status and conditions follow (`backoffLimit`,
`activeDeadlineSeconds`, `ttlSecondsAfterFinished` too), every change reaching watchers.
`pods/NAME/log` serves the process's output (`follow`, `container`, `tailLines`, `timestamps`);
before the container starts it answers the kubelet's `... is waiting to start: REASON`.
Deleting a Job deletes its pods (unless `Orphan`); a deleted pod's processes get SIGTERM, then
SIGKILL after its grace period, and the pod goes once they have ended. Settings: `start_delay`,
`base_env`, `unpullable_images`, `entrypoints`, `kill_grace`; hooks: `oom_kill`, `pid`,
`job_pods`. Leaving the `with` kills every process still running.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import itertools
import json
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import h11

from tests.kubeapi.jobs import (
    BACKOFF,
    COMPLETE,
    DEADLINE,
    PodRun,
    condition,
    finished,
    job_pod,
    prepare_job,
    timestamp,
)
from tests.kubeapi.streams import EXEC_PROTOCOLS, serve_exec, serve_portforward


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


RESOURCES = (
    Resource("", "v1", "namespaces", "Namespace", False, ("ns",)),
    Resource("", "v1", "secrets", "Secret", True),
    Resource("", "v1", "pods", "Pod", True, ("po",)),
    Resource("", "v1", "services", "Service", True, ("svc",)),
    Resource("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    Resource("apps", "v1", "deployments", "Deployment", True, ("deploy",)),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    Resource("batch", "v1", "jobs", "Job", True),
)
BY_PLURAL = {r.plural: r for r in RESOURCES}
LOG_PATH = re.compile(r"/api/v1/namespaces/[^/]+/pods/[^/]+/log/?")
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
# Strategic merge: lists merged by these keys; other lists are replaced.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "conditions": "type",
}


@dataclass
class Container:
    """A container of a pod; its ports are named, its env is what exec'd commands get."""

    name: str
    ports: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] | None = None


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


def not_found(plural: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{plural} "{name}" not found', {"name": name, "kind": plural})


def invalid(kind: str, group: str, name: str, problems: list[tuple[str, str]]) -> ApiError:
    """A 422 as validation answers it; kubectl prints `The KIND "NAME" is invalid: FIELD: ...`."""
    causes = [
        {"reason": "FieldValueInvalid", "message": message, "field": field}
        for field, message in problems
    ]
    summary = ", ".join(f"{field}: {message}" for field, message in problems)
    what = f"{kind}.{group}" if group else kind
    return ApiError(
        422,
        "Invalid",
        f'{what} "{name}" is invalid: {summary}',
        {"name": name, "group": group, "kind": kind, "causes": causes},
    )


class KubeAPIServer:
    """The server, running on its own event loop in a background thread while in a `with`."""

    def __init__(self, token: str = "test-token") -> None:
        self.token = token
        self.requests: list[tuple[str, str]] = []
        self.sessions: list[tuple[str, str]] = []  # upgraded (portforward or exec, pod)
        self.slow: dict[str, float] = {}  # plural -> seconds to wait before answering reads
        self.auto_rollout = True
        # kubectl sends no bearer token over plain HTTP: requests without one are let in, a
        # wrong one is refused, and this switch refuses everyone (expired credentials).
        self.refuse_credentials = False
        # The kubelet of Job pods (see jobs.py and the module docstring).
        self.start_delay = 0.3
        self.base_env: dict[str, str] = {}
        self.unpullable_images: set[str] = set()
        self.entrypoints: dict[str, list[str]] = {}
        self.kill_grace = 2.0
        self._runs: dict[tuple[str, str], PodRun] = {}
        self._counted: set[str] = set()  # uids of pods whose ending a Job has counted
        self._expired: set[str] = set()  # uids of Jobs past their activeDeadlineSeconds
        self._stopping = False
        self._objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._targets: dict[tuple[str, str], dict[int, tuple[str, int]]] = {}
        self._forbidden: set[tuple[str, str, str]] = set()
        self._history: list[tuple[int, str, dict[str, Any], str]] = []  # rv, type, obj, plural
        self._watchers: set[asyncio.Queue[tuple[str, dict[str, Any], str]]] = set()
        self._versions = itertools.count(1)
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> KubeAPIServer:
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop

            async def start() -> None:
                self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
                self.port = self._server.sockets[0].getsockname()[1]
                started.set()

            loop.run_until_complete(start())
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="kube-api", daemon=True)
        self._thread.start()
        started.wait(10)
        self.add_namespace("default")
        return self

    def __exit__(self, *exc: object) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return

        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._stop_runs()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_kubeconfig(
        self,
        directory: Path,
        *,
        context: str = "test",
        namespace: str = "default",
        token: str | None = None,
    ) -> Path:
        """A kubeconfig (JSON is YAML) with one context pointing at this server."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": context,
            "clusters": [{"name": "test-cluster", "cluster": {"server": self.url}}],
            "users": [{"name": "test-user", "user": {"token": token or self.token}}],
            "contexts": [
                {
                    "name": context,
                    "context": {
                        "cluster": "test-cluster",
                        "user": "test-user",
                        "namespace": namespace,
                    },
                }
            ],
        }
        path = Path(directory) / f"kubeconfig-{context}"
        path.write_text(json.dumps(config, indent=2))
        return path

    # -- arranging objects (called from tests) ---------------------------------------------------

    def add_namespace(self, name: str) -> None:
        self._put(
            "namespaces",
            "",
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name},
                "spec": {},
                "status": {"phase": "Active"},
            },
        )

    def add_secret(
        self, namespace: str, name: str, values: dict[str, str | bytes], type: str = "Opaque"
    ) -> None:
        data = {
            k: base64.b64encode(v if isinstance(v, bytes) else v.encode()).decode()
            for k, v in values.items()
        }
        self._put(
            "secrets",
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": type,
                "metadata": {"name": name, "namespace": namespace},
                "data": data,
            },
        )

    def add_config_map(self, namespace: str, name: str, data: dict[str, str]) -> None:
        self._put(
            "configmaps",
            namespace,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": namespace},
                "data": dict(data),
            },
        )

    def add_pod(
        self,
        namespace: str,
        name: str,
        *,
        containers: list[Container],
        labels: dict[str, str] | None = None,
        phase: str = "Running",
        ready: bool = True,
        port_targets: dict[int, tuple[str, int]] | None = None,
    ) -> None:
        spec = [
            {
                "name": c.name,
                "image": "example/test:latest",
                "ports": [
                    {"name": n, "containerPort": p, "protocol": "TCP"} for n, p in c.ports.items()
                ],
                "env": [{"name": k, "value": v} for k, v in c.env.items()],
                **({"command": c.command} if c.command else {}),
            }
            for c in containers
        ]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": {"containers": spec},
            "status": {"phase": phase, "podIP": "127.0.0.1", "hostIP": "127.0.0.1"},
        }
        self._put("pods", namespace, pod)
        self._targets[(namespace, name)] = dict(port_targets or {})
        self.set_pod_ready(namespace, name, ready)

    def set_pod_ready(self, namespace: str, name: str, ready: bool) -> None:
        with self._lock:
            pod = self._objects[("pods", namespace, name)]
            flag = "True" if ready else "False"
            pod["status"]["conditions"] = [
                {"type": t, "status": flag if t in ("Ready", "ContainersReady") else "True"}
                for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
            ]
            pod["status"]["containerStatuses"] = [
                {
                    "name": c["name"],
                    "ready": ready,
                    "restartCount": 0,
                    "image": c["image"],
                    "state": {"running": {"startedAt": _now()}},
                }
                for c in pod["spec"]["containers"]
            ]
            self._touch("pods", pod, "MODIFIED")

    def add_service(
        self, namespace: str, name: str, *, selector: dict[str, str], ports: list[dict[str, Any]]
    ) -> None:
        self._put(
            "services",
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "selector": selector,
                    "type": "ClusterIP",
                    "clusterIP": "10.0.0.10",
                    "ports": [{"protocol": "TCP", **p} for p in ports],
                },
            },
        )

    def add_deployment(self, namespace: str, name: str, replicas: int = 1) -> None:
        self._create(
            "deployments",
            namespace,
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {"containers": [{"name": name, "image": "x"}]},
                    },
                },
            },
        )

    def forbid(self, verb: str, plural: str, namespace: str) -> None:
        self._forbidden.add((verb, plural, namespace))

    def get_object(self, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
        return self._objects.get((plural, "" if plural == "namespaces" else namespace, name))

    def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        """Copies of the pods the Job `job` owns, oldest first."""
        with self._lock:
            found = self._objects.get(("jobs", namespace, job))
            return copy.deepcopy(self._owned_pods(found) if found else [])

    def pid(self, namespace: str, pod: str, container: str = "") -> int | None:
        """The process id a Job pod's container ran as (None before it started)."""
        run = self._runs.get((namespace, pod))
        found = run and (run.container(container) if container else run.containers[0])
        return found.pid if found else None

    def oom_kill(self, namespace: str, pod: str, container: str = "") -> None:
        """Kill a running container's process as the OOM killer would: SIGKILL, and the container
        is reported terminated `OOMKilled`, exit code 137."""
        run = self._runs.get((namespace, pod))
        found = run and (run.container(container) if container else run.containers[0])
        if not found:
            raise KeyError(f"no container {container!r} runs in pod {namespace}/{pod}")
        loop = self._loop
        assert loop is not None

        async def kill() -> None:
            found.oom_kill()

        asyncio.run_coroutine_threadsafe(kill(), loop).result(10)

    def complete_rollout(self, namespace: str, name: str) -> None:
        with self._lock:
            deployment = self._objects.get(("deployments", namespace, name))
            if deployment is None:
                return
            replicas = deployment["spec"].get("replicas", 1)
            deployment["status"] = {
                "observedGeneration": deployment["metadata"]["generation"],
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
                ],
            }
            self._touch("deployments", deployment, "MODIFIED")

    # -- the store -------------------------------------------------------------------------------

    def _put(self, plural: str, namespace: str, obj: dict[str, Any]) -> None:
        with self._lock:
            key = (plural, namespace, obj["metadata"]["name"])
            event = "MODIFIED" if key in self._objects else "ADDED"
            meta = obj["metadata"]
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", _now())
            meta.setdefault("generation", 1)
            self._objects[key] = obj
            self._touch(plural, obj, event)

    def _touch(self, plural: str, obj: dict[str, Any], event: str) -> None:
        """New resourceVersion, and tell the watchers."""
        version = next(self._versions)
        obj["metadata"]["resourceVersion"] = str(version)
        snapshot = copy.deepcopy(obj)
        self._history.append((version, event, snapshot, plural))
        loop = self._loop
        if loop is not None:
            for queue in list(self._watchers):
                loop.call_soon_threadsafe(queue.put_nowait, (event, snapshot, plural))

    def _create(self, plural: str, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            name = obj.get("metadata", {}).get("name")
            if not name:
                raise ApiError(422, "Invalid", f"{plural} is invalid: metadata.name: Required")
            if (plural, namespace, name) in self._objects:
                raise ApiError(409, "AlreadyExists", f'{plural} "{name}" already exists')
            obj = copy.deepcopy(obj)
            obj["metadata"]["namespace"] = namespace
            if plural == "namespaces":
                obj["metadata"].pop("namespace")
            if plural == "deployments":
                obj["status"] = {"observedGeneration": 0, "replicas": 0, "updatedReplicas": 0}
            if plural == "jobs" and (problems := prepare_job(obj)):
                raise invalid("Job", "batch", name, problems)
            self._put(plural, namespace, obj)
            if plural == "deployments":
                self._schedule_rollout(namespace, name)
            if plural == "jobs":
                self._start_job(obj)
            return copy.deepcopy(obj)

    def _patch(
        self, plural: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        with self._lock:
            current = self._objects.get((plural, namespace, name))
            if current is None:
                raise not_found(plural, name)
            merged = strategic_merge(copy.deepcopy(current), patch)
            if plural == "jobs" and merged["spec"].get("template") != current["spec"]["template"]:
                immutable = "Invalid value: core.PodTemplateSpec{...}: field is immutable"
                raise invalid("Job", "batch", name, [("spec.template", immutable)])
            if plural == "deployments" and merged.get("spec") != current.get("spec"):
                merged["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
                self._objects[(plural, namespace, name)] = merged
                self._touch(plural, merged, "MODIFIED")
                self._schedule_rollout(namespace, name)
            else:
                self._objects[(plural, namespace, name)] = merged
                self._touch(plural, merged, "MODIFIED")
            return merged

    def _schedule_rollout(self, namespace: str, name: str) -> None:
        if self.auto_rollout and self._loop is not None:
            self._loop.call_soon_threadsafe(
                self._loop.call_later, 0.2, self.complete_rollout, namespace, name
            )

    # -- the Job controller and the kubelet ------------------------------------------------------

    def lookup(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A copy of a stored object (for the kubelet: Secrets and ConfigMaps)."""
        with self._lock:
            obj = self._objects.get((plural, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def _later(self, delay: float, callback: Any, *args: Any) -> None:
        """callback(*args) on the server's loop after `delay` seconds (from any thread)."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(loop.call_later, delay, callback, *args)

    def _start_job(self, job: dict[str, Any]) -> None:
        """A new Job: its start time, its deadline, its first pod."""
        meta = job["metadata"]
        job["status"] = {"startTime": timestamp()}
        deadline = job["spec"].get("activeDeadlineSeconds")
        if deadline is not None:
            self._later(float(deadline), self._expire, meta["namespace"], meta["name"], meta["uid"])
        self._sync_job(meta["namespace"], meta["name"])

    def _expire(self, namespace: str, name: str, uid: str) -> None:
        """activeDeadlineSeconds have passed since the Job started."""
        with self._lock:
            job = self._objects.get(("jobs", namespace, name))
            if job is not None and job["metadata"]["uid"] == uid:
                self._expired.add(uid)
                self._sync_job(namespace, name)

    def _sync_job(self, namespace: str, name: str) -> None:
        """The Job controller: count the pods that ended, decide the outcome, delete the pods
        still running once it is decided, start a pod when one is due; then write the status."""
        with self._lock:
            job = self._objects.get(("jobs", namespace, name))
            if job is None or finished(job) or job["metadata"].get("deletionTimestamp"):
                return
            spec, status = job["spec"], copy.deepcopy(job["status"])
            pods = self._owned_pods(job)
            for pod in pods:
                phase, uid = pod["status"].get("phase"), pod["metadata"]["uid"]
                if phase in ("Succeeded", "Failed") and uid not in self._counted:
                    self._counted.add(uid)
                    key = "succeeded" if phase == "Succeeded" else "failed"
                    status[key] = status.get(key, 0) + 1
            live = [p for p in pods if p["status"].get("phase") not in ("Succeeded", "Failed")]
            conditions = status.setdefault("conditions", [])
            decided = ("SuccessCriteriaMet", "FailureTarget")
            target = next((c for c in conditions if c["type"] in decided), None)
            if target is None:
                if status.get("succeeded", 0) >= spec.get("completions", 1):
                    target = condition("SuccessCriteriaMet", *COMPLETE)
                elif status.get("failed", 0) > spec.get("backoffLimit", 6):
                    target = condition("FailureTarget", *BACKOFF)
                elif job["metadata"]["uid"] in self._expired:
                    target = condition("FailureTarget", *DEADLINE)
                if target is not None:
                    conditions.append(target)
            if target is not None:
                for pod in live:
                    self._delete_pod(pod, self._grace(pod, {}))
                if not live:
                    self._finish_job(job, status, target)
            elif not live and not self._stopping:
                live = [self._new_pod(job)]
            active = [p for p in live if not p["metadata"].get("deletionTimestamp")]
            status.pop("active", None)
            if active:
                status["active"] = len(active)
            status["ready"] = sum(1 for p in active if _pod_ready(p))
            status["terminating"] = len(live) - len(active)
            status["uncountedTerminatedPods"] = {}
            if not conditions:
                del status["conditions"]
            if status != job["status"]:
                job["status"] = status
                self._touch("jobs", job, "MODIFIED")

    def _finish_job(
        self, job: dict[str, Any], status: dict[str, Any], target: dict[str, Any]
    ) -> None:
        """The final condition once no pod runs: Complete (with completionTime) or Failed."""
        final = "Complete" if target["type"] == "SuccessCriteriaMet" else "Failed"
        status["conditions"].append(condition(final, target["reason"], target["message"]))
        if final == "Complete":
            status["completionTime"] = timestamp()
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        if ttl is not None:
            meta = job["metadata"]
            self._later(float(ttl), self._ttl_expired, meta["namespace"], meta["name"], meta["uid"])

    def _ttl_expired(self, namespace: str, name: str, uid: str) -> None:
        """The TTL-after-finished controller: a finished Job goes, and its pods with it."""
        with self._lock:
            job = self._objects.get(("jobs", namespace, name))
            if job is not None and job["metadata"]["uid"] == uid:
                self._delete_job(job, "Background")

    def _owned_pods(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        """The pods (stored objects) whose controller is `job`, oldest first."""
        uid = job["metadata"]["uid"]
        return [
            pod
            for (plural, ns, _), pod in self._objects.items()
            if plural == "pods"
            and ns == job["metadata"]["namespace"]
            and any(o.get("uid") == uid for o in pod["metadata"].get("ownerReferences", []))
        ]

    def _new_pod(self, job: dict[str, Any]) -> dict[str, Any]:
        """The Job controller creates a pod; the kubelet starts it on the loop."""
        namespace = job["metadata"]["namespace"]
        taken = {n for (p, ns, n) in self._objects if p == "pods" and ns == namespace}
        pod = job_pod(job, taken)
        self._put("pods", namespace, pod)
        self._later(0, self._start_run, namespace, pod["metadata"]["name"])
        return pod

    def _start_run(self, namespace: str, name: str) -> None:
        """The kubelet takes a new pod (on the loop)."""
        with self._lock:
            pod = self._objects.get(("pods", namespace, name))
            if pod is None or self._stopping:
                return
            run = PodRun(self, pod)
            self._runs[(namespace, name)] = run
        run.start()

    def pod_changed(self, run: PodRun) -> None:
        """The kubelet's report on a pod (on the loop); then its Job's controller looks, and a
        deleted pod whose processes all ended goes."""
        with self._lock:
            pod = self._objects.get(("pods", run.namespace, run.name))
            if pod is None or pod["metadata"]["uid"] != run.uid:
                return
            status = run.status()
            if status != pod["status"]:
                pod["status"] = status
                self._touch("pods", pod, "MODIFIED")
            if owner := _owner(pod):
                self._sync_job(run.namespace, owner)
            if run.finished and pod["metadata"].get("deletionTimestamp"):
                self._remove_pod(run.namespace, run.name)

    def _delete(
        self, plural: str, namespace: str, name: str, options: dict[str, Any]
    ) -> dict[str, Any]:
        """DELETE of a pod (graceful) or a Job (its pods as `propagationPolicy` says; the API's
        default for Jobs is Orphan, kubectl sends Background)."""
        with self._lock:
            obj = self._objects.get((plural, namespace, name))
            if obj is None:
                raise not_found(plural, name)
            if plural == "pods":
                return self._delete_pod(obj, self._grace(obj, options))
            return self._delete_job(obj, options.get("propagationPolicy") or "Orphan")

    def _grace(self, pod: dict[str, Any], options: dict[str, Any]) -> float:
        """Seconds between SIGTERM and SIGKILL: the request's, the pod's, else `kill_grace`."""
        for value in (
            options.get("gracePeriodSeconds"),
            pod["spec"].get("terminationGracePeriodSeconds"),
        ):
            if value is not None:
                return float(value)
        return self.kill_grace

    def _delete_pod(self, pod: dict[str, Any], grace: float) -> dict[str, Any]:
        """Graceful deletion: the pod is marked, its processes are stopped, then it goes."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        run = self._runs.get((namespace, name))
        if run is None or run.finished or run.uid != pod["metadata"]["uid"]:
            self._remove_pod(namespace, name)
            return copy.deepcopy(pod)
        meta = pod["metadata"]
        if not meta.get("deletionTimestamp"):
            meta["deletionTimestamp"] = timestamp(time.time() + grace)
            meta["deletionGracePeriodSeconds"] = int(grace)
            self._touch("pods", pod, "MODIFIED")
        if self._loop is not None:
            self._loop.call_soon_threadsafe(run.stop, grace)
        return copy.deepcopy(pod)

    def _remove_pod(self, namespace: str, name: str) -> None:
        pod = self._objects.pop(("pods", namespace, name), None)
        if pod is None:
            return
        self._touch("pods", pod, "DELETED")
        if owner := _owner(pod):
            self._later(0, self._pod_gone, namespace, owner)

    def _pod_gone(self, namespace: str, job_name: str) -> None:
        """A Job's pod has gone: a Job deleted in the foreground goes when its last pod has."""
        with self._lock:
            job = self._objects.get(("jobs", namespace, job_name))
            if job is None:
                return
            if not job["metadata"].get("deletionTimestamp"):
                self._sync_job(namespace, job_name)
            elif not self._owned_pods(job):
                del self._objects[("jobs", namespace, job_name)]
                self._touch("jobs", job, "DELETED")

    def _delete_job(self, job: dict[str, Any], policy: str) -> dict[str, Any]:
        """Delete a Job: Orphan leaves its pods, Foreground deletes them and then the Job,
        Background deletes the Job and then them."""
        meta = job["metadata"]
        pods = self._owned_pods(job)
        if policy == "Foreground" and pods:
            meta["deletionTimestamp"] = timestamp()
            meta["finalizers"] = ["foregroundDeletion"]
            self._touch("jobs", job, "MODIFIED")
        else:
            del self._objects[("jobs", meta["namespace"], meta["name"])]
            self._touch("jobs", job, "DELETED")
        for pod in pods:
            if policy == "Orphan":
                pod["metadata"].pop("ownerReferences", None)
                self._touch("pods", pod, "MODIFIED")
            else:
                self._delete_pod(pod, self._grace(pod, {}))
        return copy.deepcopy(job)

    async def _stop_runs(self) -> None:
        """Kill every process still running and wait until their runs have ended."""
        with self._lock:
            self._stopping = True
            runs = list(self._runs.values())
        for run in runs:
            run.stop(0)
        tasks = [run.task for run in runs if run.task is not None and not run.task.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5)
            for task in pending:
                task.cancel()

    async def _logs(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, path: str, query: dict[str, str]
    ) -> None:
        """GET pods/NAME/log: the container's stdout and stderr lines as they came; with
        `follow`, new ones as they come, until the container ends."""
        _, namespace, name, _ = _parse(path)
        key = (namespace or "", name or "")
        with self._lock:
            pod = self._objects.get(("pods", *key))
            if pod is None:
                raise not_found("pods", key[1])
            names = [c["name"] for c in pod["spec"]["containers"]]
            if not query.get("container") and len(names) > 1:
                raise ApiError(
                    400,
                    "BadRequest",
                    f"a container name must be specified for pod {key[1]}, "
                    f"choose one of: [{' '.join(names)}]",
                )
            container = self._container(pod, query.get("container", ""))["name"]
            statuses = pod["status"].get("containerStatuses", [])
            status: dict[str, Any] = next((s for s in statuses if s["name"] == container), {})
            run = self._runs.get(key)
            source = run.container(container) if run and run.uid == pod["metadata"]["uid"] else None
        problem = _log_refusal(container, key[1], status, query.get("previous") == "true")
        if problem:
            raise ApiError(400, "BadRequest", problem)
        response = h11.Response(
            status_code=200,
            headers=[("content-type", "text/plain"), ("transfer-encoding", "chunked")],
        )
        writer.write(conn.send(response))
        follow, stamps = query.get("follow") == "true", query.get("timestamps") == "true"
        tail = int(query["tailLines"]) if query.get("tailLines", "").isdigit() else None
        if source is not None:
            async for batch in source.read(follow, tail):
                data = b"".join(
                    (f"{timestamp(at, nano=True)} ".encode() if stamps else b"") + line
                    for at, line in batch
                )
                writer.write(conn.send(h11.Data(data=data)))
                await writer.drain()
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()

    def _list(
        self, plural: str, namespace: str | None, query: dict[str, str]
    ) -> list[dict[str, Any]]:
        labels = _selector(query.get("labelSelector", ""))
        fields = _selector(query.get("fieldSelector", ""))
        with self._lock:
            if plural == "endpointslices":
                found = self._endpoint_slices(namespace)
            else:
                found = [
                    copy.deepcopy(obj)
                    for (p, ns, _), obj in sorted(self._objects.items())
                    if p == plural and (namespace is None or ns == namespace)
                ]
        return [obj for obj in found if _matches(obj, labels, fields)]

    def _endpoint_slices(self, namespace: str | None) -> list[dict[str, Any]]:
        """One EndpointSlice per Service with a selector, listing its pods and their readiness."""
        slices = []
        for (plural, ns, name), service in sorted(self._objects.items()):
            selector = service.get("spec", {}).get("selector")
            if plural != "services" or not selector or namespace not in (None, ns):
                continue
            pods = [
                pod
                for (p, pod_ns, _), pod in sorted(self._objects.items())
                if p == "pods" and pod_ns == ns and _matches(pod, selector, {})
            ]
            slices.append(
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": f"{name}-slice",
                        "namespace": ns,
                        "labels": {"kubernetes.io/service-name": name},
                    },
                    "addressType": "IPv4",
                    "endpoints": [
                        {
                            "addresses": [pod["status"].get("podIP", "127.0.0.1")],
                            "conditions": {"ready": _pod_ready(pod), "terminating": False},
                            "targetRef": {
                                "kind": "Pod",
                                "name": pod["metadata"]["name"],
                                "namespace": ns,
                            },
                        }
                        for pod in pods
                    ],
                    "ports": [
                        {"name": port.get("name", ""), "port": port["port"], "protocol": "TCP"}
                        for port in service["spec"].get("ports", [])
                    ],
                }
            )
        return slices

    # -- HTTP ------------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await _read_request(conn, reader)
                if request is None:
                    return
                if await self._respond(conn, reader, writer, request, body):
                    return  # the connection was upgraded and is done
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, asyncio.CancelledError):
            return
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _respond(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: h11.Request,
        body: bytes,
    ) -> bool:
        method = request.method.decode()
        target = request.target.decode()
        self.requests.append((method, target))
        headers: dict[str, str] = {}
        for raw_name, raw_value in request.headers:  # repeated headers join, as HTTP allows
            name, value = raw_name.decode().lower(), raw_value.decode()
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        parts = urlsplit(target)
        path = unquote(parts.path)
        delay = next((d for plural, d in self.slow.items() if f"/{plural}" in path), 0.0)
        if delay and method == "GET":
            await asyncio.sleep(delay)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        queries = parse_qs(parts.query)
        try:
            token = headers.get("authorization")
            if self.refuse_credentials or (token and token != f"Bearer {self.token}"):
                raise ApiError(401, "Unauthorized", "Unauthorized")
            upgrade = headers.get("upgrade", "").lower()
            if path.endswith(("/portforward", "/exec")):
                if upgrade == "websocket":
                    raise ApiError(400, "BadRequest", "websocket upgrades are not supported")
                if upgrade.startswith("spdy/3.1"):
                    await self._upgrade(conn, writer, reader, path, queries, headers)
                    return True
            if method == "GET" and LOG_PATH.fullmatch(path):
                await self._logs(conn, writer, path, query)
                return True
            if query.get("watch") in ("true", "1"):
                await self._watch(conn, writer, path, query)
                return True
            status, payload = self._route(method, path, query, body, headers)
        except ApiError as exc:
            status, payload = exc.code, exc.status()
        await _send(conn, writer, status, payload)
        return False

    def _route(
        self, method: str, path: str, query: dict[str, str], body: bytes, headers: dict[str, str]
    ) -> tuple[int, Any]:
        discovery = self._discovery(path)
        if discovery is not None:
            return 200, discovery
        resource, namespace, name, _ = _parse(path)
        verb = {
            "GET": "get" if name else "list",
            "POST": "create",
            "PATCH": "patch",
            "PUT": "update",
            "DELETE": "delete",
        }.get(method, "")
        if (verb, resource.plural, namespace or "") in self._forbidden:
            what = f'{resource.plural} "{name}"' if name else resource.plural
            raise ApiError(
                403,
                "Forbidden",
                f'{what} is forbidden: User "test-user" cannot {verb} resource '
                f'"{resource.plural}" in API group "{resource.group}" in the namespace '
                f'"{namespace}"',
            )
        ns = namespace or ""
        if method == "GET" and name:
            obj = self._objects.get((resource.plural, ns, name))
            if obj is None:
                raise not_found(resource.plural, name)
            with self._lock:
                return 200, copy.deepcopy(obj)
        if method == "GET":
            items = self._list(resource.plural, namespace if resource.namespaced else None, query)
            return 200, {
                "kind": f"{resource.kind}List",
                "apiVersion": resource.group_version,
                "metadata": {"resourceVersion": str(self._current_version())},
                "items": items,
            }
        if method == "POST":
            if resource.namespaced and ("namespaces", "", ns) not in self._objects:
                raise not_found("namespaces", ns)
            return 201, self._create(resource.plural, ns, json.loads(body))
        if method == "PATCH" and name:
            return 200, self._patch(resource.plural, ns, name, json.loads(body))
        if method == "DELETE" and name:
            options = {**query, **(json.loads(body) if body else {})}
            if resource.plural in ("jobs", "pods"):
                return 200, self._delete(resource.plural, ns, name, options)
            with self._lock:
                obj = self._objects.pop((resource.plural, ns, name), None)
            if obj is None:
                raise not_found(resource.plural, name)
            self._touch(resource.plural, obj, "DELETED")
            return 200, obj
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {path}")

    def _current_version(self) -> int:
        return self._history[-1][0] if self._history else 0

    # -- discovery -------------------------------------------------------------------------------

    def _discovery(self, path: str) -> Any:
        path = path.rstrip("/")
        if path == "/version":
            return {"major": "1", "minor": "37", "gitVersion": "v1.37.0", "platform": "linux/amd64"}
        if path == "/api":
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}
                ],
            }
        if path == "/apis":
            groups = []
            for group in sorted({r.group for r in RESOURCES if r.group}):
                version = {"groupVersion": f"{group}/v1", "version": "v1"}
                groups.append({"name": group, "versions": [version], "preferredVersion": version})
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        for prefix in {r.prefix for r in RESOURCES}:
            if path == prefix:
                return self._resource_list(prefix)
        if path == "/openapi/v3":
            return {
                "paths": {
                    prefix.lstrip("/"): {"serverRelativeURL": f"/openapi/v3{prefix}?hash=kubeapi"}
                    for prefix in {r.prefix for r in RESOURCES}
                }
            }
        if path.startswith("/openapi/v3/"):
            return self._openapi(path.removeprefix("/openapi/v3"))
        return None

    def _resource_list(self, prefix: str) -> dict[str, Any]:
        resources: list[dict[str, Any]] = []
        group_version = ""
        for r in RESOURCES:
            if r.prefix != prefix:
                continue
            group_version = r.group_version
            resources.append(
                {
                    "name": r.plural,
                    "singularName": r.kind.lower(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": VERBS,
                    "shortNames": list(r.short_names),
                }
            )
            if r.plural == "pods":
                for sub, kind, verbs in (
                    ("portforward", "PodPortForwardOptions", ["create", "get"]),
                    ("exec", "PodExecOptions", ["create", "get"]),
                    ("log", "Pod", ["get"]),
                ):
                    resources.append(
                        {
                            "name": f"pods/{sub}",
                            "singularName": "",
                            "namespaced": True,
                            "kind": kind,
                            "verbs": verbs,
                        }
                    )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }

    def _openapi(self, prefix: str) -> dict[str, Any]:
        """Just enough OpenAPI v3 for kubectl apply: operations that take fieldValidation."""
        field_validation = {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}
        paths: dict[str, Any] = {}
        for r in RESOURCES:
            if r.prefix != prefix:
                continue
            gvk = {"group": r.group, "version": r.version, "kind": r.kind}
            scope = (
                f"{prefix}/namespaces/{{namespace}}/{r.plural}"
                if r.namespaced
                else f"{prefix}/{r.plural}"
            )
            operation = {
                "parameters": [field_validation],
                "x-kubernetes-group-version-kind": gvk,
                "responses": {"200": {"description": "OK"}},
            }
            paths[scope] = {"post": {**operation, "x-kubernetes-action": "post"}}
            paths[f"{scope}/{{name}}"] = {
                "get": {**operation, "x-kubernetes-action": "get"},
                "patch": {**operation, "x-kubernetes-action": "patch"},
                "put": {**operation, "x-kubernetes-action": "put"},
            }
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.37.0"},
            "paths": paths,
            "components": {"schemas": {}},
        }

    # -- watches ---------------------------------------------------------------------------------

    async def _watch(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, path: str, query: dict[str, str]
    ) -> None:
        resource, namespace, _, _ = _parse(path)
        labels = _selector(query.get("labelSelector", ""))
        fields = _selector(query.get("fieldSelector", ""))
        queue: asyncio.Queue[tuple[str, dict[str, Any], str]] = asyncio.Queue()

        def wanted(obj: dict[str, Any], plural: str) -> bool:
            return (
                plural == resource.plural
                and _matches(obj, labels, fields)
                and (namespace is None or obj["metadata"].get("namespace") == namespace)
            )

        with self._lock:
            self._watchers.add(queue)
            backlog: list[tuple[str, dict[str, Any]]] = []
            if query.get("sendInitialEvents") == "true":
                backlog = [("ADDED", o) for o in self._list(resource.plural, namespace, query)]
                backlog.append(
                    (
                        "BOOKMARK",
                        {
                            "kind": resource.kind,
                            "apiVersion": resource.group_version,
                            "metadata": {
                                "resourceVersion": str(self._current_version()),
                                "annotations": {"k8s.io/initial-events-end": "true"},
                            },
                        },
                    )
                )
            elif query.get("resourceVersion", "0") not in ("", "0"):
                since = int(query["resourceVersion"])
                backlog = [
                    (event, obj)
                    for version, event, obj, plural in self._history
                    if version > since and wanted(obj, plural)
                ]
        response = h11.Response(
            status_code=200,
            headers=[("content-type", "application/json"), ("transfer-encoding", "chunked")],
        )
        writer.write(conn.send(response))
        try:
            for event, obj in backlog:
                writer.write(conn.send(h11.Data(data=_event(event, obj))))
            await writer.drain()
            timeout = float(query.get("timeoutSeconds", "1800"))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while (left := deadline - loop.time()) > 0:
                try:
                    event, obj, plural = await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    break
                if wanted(obj, plural):
                    writer.write(conn.send(h11.Data(data=_event(event, obj))))
                    await writer.drain()
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
        finally:
            self._watchers.discard(queue)

    # -- upgraded connections --------------------------------------------------------------------

    async def _upgrade(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        reader: asyncio.StreamReader,
        path: str,
        queries: dict[str, list[str]],
        headers: dict[str, str],
    ) -> None:
        _, namespace, name, sub = _parse(path)
        pod = self._objects.get(("pods", namespace or "", name or ""))
        if pod is None:
            raise not_found("pods", name or "")
        phase = pod["status"].get("phase")
        if sub == "portforward":
            if phase != "Running":
                raise ApiError(400, "BadRequest", f"pod {name} is not running (phase {phase})")
            protocol = "portforward.k8s.io"
        else:
            if phase in ("Succeeded", "Failed"):
                raise ApiError(
                    400,
                    "BadRequest",
                    f"cannot exec into a container in a completed pod; current phase is {phase}",
                )
            offered = [v.strip() for v in headers.get("x-stream-protocol-version", "").split(",")]
            protocol = next((p for p in EXEC_PROTOCOLS if p in offered), "")
            if not protocol:
                raise ApiError(400, "BadRequest", "no supported stream protocol was offered")
        container = self._container(
            pod, queries.get("container", [""])[-1] if sub == "exec" else ""
        )
        response = h11.InformationalResponse(
            status_code=101,
            headers=[
                ("connection", "Upgrade"),
                ("upgrade", "SPDY/3.1"),
                ("x-stream-protocol-version", protocol),
            ],
        )
        writer.write(conn.send(response))
        await writer.drain()
        self.sessions.append((sub or "", name or ""))
        stream_reader = _with_prefix(reader, conn.trailing_data[0])
        targets = self._targets.get((namespace or "", name or ""), {})

        async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            if port not in targets:
                raise ConnectionRefusedError(111, "connect: connection refused")
            host, real_port = targets[port]
            return await asyncio.open_connection(host, real_port)

        if sub == "portforward":
            await serve_portforward(stream_reader, writer, connect, f"{namespace}/{name}")
        else:
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": "/tmp",
                **{e["name"]: e.get("value", "") for e in container.get("env", [])},
            }
            flags = {
                k: queries.get(k, ["false"])[-1] in ("true", "1")
                for k in ("stdin", "stdout", "stderr")
            }
            await serve_exec(
                stream_reader,
                writer,
                protocol=protocol,
                command=queries.get("command", []),
                env=env,
                **flags,
            )

    def _container(self, pod: dict[str, Any], name: str) -> dict[str, Any]:
        containers = pod["spec"]["containers"]
        if not name:
            return dict(containers[0])
        for container in containers:
            if container["name"] == name:
                return dict(container)
        raise ApiError(
            400, "BadRequest", f"container {name} is not valid for pod {pod['metadata']['name']}"
        )


# -- helpers ---------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _event(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


def _parse(path: str) -> tuple[Resource, str | None, str | None, str | None]:
    """resource, namespace, name and subresource of an object path."""
    for prefix in {r.prefix for r in RESOURCES}:
        if not path.startswith(prefix + "/"):
            continue
        rest = path[len(prefix) + 1 :].strip("/").split("/")
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        for resource in RESOURCES:
            if resource.prefix == prefix and resource.plural == rest[0]:
                name = rest[1] if len(rest) > 1 else None
                sub = rest[2] if len(rest) > 2 else None
                return resource, namespace, name, sub
    raise ApiError(404, "NotFound", "the server could not find the requested resource")


def _pod_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _owner(pod: dict[str, Any]) -> str | None:
    """The name of the Job that controls the pod, if one does."""
    for ref in pod["metadata"].get("ownerReferences", []):
        if ref.get("kind") == "Job" and ref.get("controller"):
            return str(ref["name"])
    return None


def _log_refusal(container: str, pod: str, status: dict[str, Any], previous: bool) -> str | None:
    """Why the kubelet will not serve the container's log, if it will not."""
    state = status.get("state", {})
    what = f'container "{container}" in pod "{pod}"'
    if previous:
        return f"previous terminated {what} not found"
    if "running" in state:
        return None
    if "terminated" in state:
        return None if status.get("containerID") else f"{what} is terminated"
    reason = state.get("waiting", {}).get("reason")
    if reason is None:
        return f"{what} is waiting to start - no logs yet"
    messages = {
        "ErrImagePull": "image can't be pulled",
        "ImagePullBackOff": "trying and failing to pull image",
    }
    return f"{what} is waiting to start: {messages.get(reason, reason)}"


def _selector(text: str) -> dict[str, str]:
    pairs = [part.split("=", 1) for part in text.replace("==", "=").split(",") if "=" in part]
    return {key.strip(): value.strip() for key, value in pairs}


def _matches(obj: dict[str, Any], labels: dict[str, str], fields: dict[str, str]) -> bool:
    have = obj["metadata"].get("labels") or {}
    if any(have.get(k) != v for k, v in labels.items()):
        return False
    values = {
        "metadata.name": obj["metadata"].get("name"),
        "metadata.namespace": obj["metadata"].get("namespace"),
    }
    return all(values.get(k) == v for k, v in fields.items())


def strategic_merge(target: Any, patch: Any, key: str = "") -> Any:
    """A strategic merge patch of the kind client-side apply sends (enough for tests)."""
    if isinstance(patch, dict) and isinstance(target, dict):
        for name, value in patch.items():
            if name.startswith("$"):
                continue
            if value is None:
                target.pop(name, None)
            else:
                target[name] = strategic_merge(target.get(name), value, name)
        return target
    if isinstance(patch, list) and isinstance(target, list) and key in MERGE_KEYS:
        merge_key = MERGE_KEYS[key]
        merged = list(target)
        for item in patch:
            if not isinstance(item, dict) or merge_key not in item:
                continue
            for index, existing in enumerate(merged):
                if isinstance(existing, dict) and existing.get(merge_key) == item[merge_key]:
                    merged[index] = strategic_merge(existing, item)
                    break
            else:
                merged.append(item)
        return merged
    return copy.deepcopy(patch)


async def _read_request(
    conn: h11.Connection, reader: asyncio.StreamReader
) -> tuple[h11.Request | None, bytes]:
    request: h11.Request | None = None
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(65536)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return request, body
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return (request, body) if event is h11.PAUSED else (None, b"")


async def _send(
    conn: h11.Connection, writer: asyncio.StreamWriter, status: int, payload: Any
) -> None:
    body = json.dumps(payload).encode()
    data = conn.send(
        h11.Response(
            status_code=status,
            headers=[("content-type", "application/json"), ("content-length", str(len(body)))],
        )
    )
    data = (data or b"") + (conn.send(h11.Data(data=body)) or b"")
    data += conn.send(h11.EndOfMessage()) or b""
    writer.write(data)
    await writer.drain()


def _with_prefix(reader: asyncio.StreamReader, prefix: bytes) -> asyncio.StreamReader:
    """`reader`, but yielding `prefix` (bytes h11 had already read) first."""
    if not prefix:
        return reader
    joined = asyncio.StreamReader()
    joined.feed_data(prefix)

    async def pump() -> None:
        while chunk := await reader.read(65536):
            joined.feed_data(chunk)
        joined.feed_eof()

    task = asyncio.ensure_future(pump())
    task.add_done_callback(lambda _: None)
    return joined
