"""kubectl, through `sh`: Secrets, pods and services, with errors a user can act on.

All cluster access is the user's own kubectl, so every kubeconfig, context and auth plugin
works. `--context` and `--namespace` are always passed explicitly: when no context is
configured, the kubeconfig's current context is read once and then named on every call, so one
invocation never drifts between clusters.

Each lookup is a plain blocking call; the tunnel runs the ones it needs side by side (see
`kubemigrate.kubernetes.reach`). kubectl's failures are told apart by what it prints (its messages
are stable across versions): a missing binary, an unreachable API server, refused credentials, a
forbidden request, an unknown context, a missing namespace, Secret or key each get their own
message.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kubemigrate.errors import ClusterError, NotFoundError
from kubemigrate.process import children, programs

if TYPE_CHECKING:
    import sh

    from kubemigrate.settings.declared import Settings

REQUEST_TIMEOUT = "20s"


@dataclass(frozen=True)
class Secret:
    """A Secret's values, decoded, held in memory only; `where` names it for messages."""

    name: str
    values: dict[str, str]
    where: str

    def __repr__(self) -> str:
        return f"Secret({self.name!r}, keys={sorted(self.values)})"


@dataclass(frozen=True)
class Kubectl:
    """The user's kubectl, bound to one kubeconfig, context and namespace."""

    binary: str = "kubectl"
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str = "default"

    @classmethod
    def from_settings(cls, settings: Settings) -> Kubectl:
        """kubectl for the settings, with the context resolved to an explicit name."""
        kubectl = cls(
            settings.kubectl, settings.kubeconfig, settings.kube_context, settings.namespace
        )
        if kubectl.context is None:
            return Kubectl(
                kubectl.binary, kubectl.kubeconfig, kubectl.current_context(), kubectl.namespace
            )
        return kubectl

    @property
    def where(self) -> str:
        return f"namespace {self.namespace!r} of context {self.context!r}"

    # -- running ---------------------------------------------------------------------------------

    def argv(self, *, namespaced: bool = True) -> list[str]:
        """kubectl's path with the kubeconfig, context and namespace options."""
        args = [kubectl_path(self.binary)]
        if self.kubeconfig:
            args += ["--kubeconfig", self.kubeconfig]
        if self.context:
            args += ["--context", self.context]
        if namespaced:
            args += ["--namespace", self.namespace]
        return args

    def command(self, *, namespaced: bool = True) -> sh.Command:
        """`kubectl` as an sh command with the options of `argv` baked in."""
        path, *args = self.argv(namespaced=namespaced)
        return programs.command(path).bake(*args)

    def run(self, *args: str, what: str, namespaced: bool = True, short: bool = True) -> str:
        """Run kubectl and return its output; failures become ClusterError.

        `short` requests get kubectl's --request-timeout, so an API server that does not
        answer fails the task instead of hanging it; watches (rollout status) bring their own.
        """
        timeout = [f"--request-timeout={REQUEST_TIMEOUT}"] if short else []
        finished = children.run(self.command(namespaced=namespaced), *args, *timeout)
        if not finished.ok:
            raise self.error(finished.errors.text, what)
        return finished.output

    def get(
        self,
        kind: str,
        name: str | None = None,
        *,
        selector: str | None = None,
        hint: str | None = None,
    ) -> dict[str, Any]:
        """`kubectl get KIND [NAME] [-l SELECTOR] -o json`, parsed.

        Given a `hint`, a missing object is told apart from a missing namespace."""
        label = kind.capitalize()
        what = f"read {label} {name!r}" if name else f"list {kind} matching {selector!r}"
        args = ["get", kind, *([name] if name else []), "-o", "json"]
        if selector:
            args += ["-l", selector]
        try:
            found: dict[str, Any] = json.loads(self.run(*args, what=what))
        except NotFoundError:
            if hint is None:
                raise
            self.require_namespace()
            raise ClusterError(f"{label} {name!r} does not exist in {self.where}; {hint}") from None
        return found

    def current_context(self) -> str:
        """The kubeconfig's current context, read once so later calls can name it."""
        try:
            output = self.run(
                "config", "current-context", what="read the current context", namespaced=False
            )
        except ClusterError as exc:
            if "current-context is not set" not in exc.message:
                raise
            raise ClusterError(
                f"{self.kubeconfig_shown()} names no current context: set "
                "KUBEMIGRATE_KUBE_CONTEXT, or choose one with `kubectl config use-context NAME`"
            ) from None
        return output.strip()

    def kubeconfig_shown(self) -> str:
        """Which kubeconfig kubectl reads, in words, for messages."""
        if self.kubeconfig:
            described = f"the kubeconfig {self.kubeconfig} (KUBEMIGRATE_KUBECONFIG)"
            path = self.kubeconfig
        elif os.environ.get("KUBECONFIG"):
            path = os.environ["KUBECONFIG"]
            described = f"the kubeconfig {path} (KUBECONFIG)"
        else:
            path = os.path.expanduser("~/.kube/config")
            described = f"the default kubeconfig {path}"
        if os.pathsep not in path and not os.path.exists(path):
            return f"{described}, which does not exist,"
        return described

    # -- errors ----------------------------------------------------------------------------------

    def error(self, stderr: str, what: str) -> ClusterError:
        """One message for kubectl's failure to `what`, told apart by its stderr."""
        text = " ".join(stderr.split())
        detail = _last_error(stderr)
        context = self.context or "(current)"
        if re.search(r'context "[^"]*" does not exist|context was not found', text):
            return ClusterError(
                f"kubeconfig has no context {context!r}; `kubectl config get-contexts` lists them"
            )
        if "Unable to connect to the server" in text or re.search(
            r"connection refused|no such host|i/o timeout|dial tcp|TLS handshake timeout", text
        ):
            return ClusterError(
                f"cannot reach the Kubernetes API server of context {context!r} to {what}: {detail}"
            )
        if "(Unauthorized)" in text or "You must be logged in" in text:
            return ClusterError(
                f"the cluster of context {context!r} refused kubectl's credentials: log in again "
                "or check the kubeconfig"
            )
        if "(Forbidden)" in text:
            return ClusterError(f"kubectl is not allowed to {what} in {self.where}: {detail}")
        if "(NotFound)" in text:
            return NotFoundError(f"cannot {what}: {detail} in {self.where}")
        if self.context is None:
            return ClusterError(f"kubectl failed to {what}: {detail}")
        return ClusterError(f"kubectl failed to {what} in {self.where}: {detail}")

    def require_namespace(self) -> None:
        """Fail with a clear message when the namespace does not exist."""
        try:
            self.run(
                "get",
                "namespace",
                self.namespace,
                "-o",
                "name",
                what=f"read namespace {self.namespace!r}",
                namespaced=False,
            )
        except NotFoundError:
            raise ClusterError(
                f"namespace {self.namespace!r} does not exist in context {self.context!r}; "
                "check KUBEMIGRATE_NAMESPACE"
            ) from None

    # -- objects ---------------------------------------------------------------------------------

    def secret(self, name: str) -> Secret:
        """A Secret's data, base64-decoded, held in memory only."""
        found = self.get("secret", name, hint="check KUBEMIGRATE_DB_SECRET")
        return Secret(name, secret_values(name, found), self.where)

    def ready_pod(self, selector: str) -> str:
        """The name of a Running, Ready pod matching `selector`."""
        pods = self.get("pods", selector=selector).get("items", [])
        if not pods:
            self.require_namespace()
            raise ClusterError(f"no pod matches {selector!r} in {self.where}")
        for pod in pods:
            if is_ready(pod):
                return str(pod["metadata"]["name"])
        states = ", ".join(f"{p['metadata']['name']} {pod_state(p)}" for p in pods)
        raise ClusterError(
            f"no Ready pod matches {selector!r} in {self.where} ({states}); wait for the "
            "database pod to become Ready"
        )

    def ready_pod_behind(self, service: str) -> str:
        """The name of a Ready pod behind Service `service`.

        The Service's EndpointSlices tell in one request; when they list no Ready pod, or
        cannot be read, the Service and its pods are read, to find one or to say exactly why
        there is none.
        """
        try:
            ready = self.endpoints(service)
        except ClusterError:
            ready = []
        return ready[0] if ready else self.ready_pod(self.service_selector(service))

    def endpoints(self, service: str) -> list[str]:
        """The Ready pods that the Service's EndpointSlices list."""
        selector = f"kubernetes.io/service-name={service}"
        found = self.get("endpointslices", selector=selector)
        return [
            endpoint["targetRef"]["name"]
            for item in found.get("items", [])
            for endpoint in item.get("endpoints") or []
            if endpoint.get("conditions", {}).get("ready")
            and endpoint.get("targetRef", {}).get("kind") == "Pod"
        ]

    def service_selector(self, name: str) -> str:
        """The pod selector of Service `name`, as a label selector string."""
        hint = "check KUBEMIGRATE_DB_SERVICE or set KUBEMIGRATE_DB_SELECTOR"
        service = self.get("service", name, hint=hint)
        selector = service.get("spec", {}).get("selector") or {}
        if not selector:
            raise ClusterError(f"Service {name!r} has no pod selector; set KUBEMIGRATE_DB_SELECTOR")
        return ",".join(f"{key}={value}" for key, value in sorted(selector.items()))


def kubectl_path(binary: str) -> str:
    """The full path of kubectl (KUBEMIGRATE_KUBECTL: a name on PATH or a path)."""
    return programs.find(
        binary,
        what="kubectl",
        install="install kubectl or set KUBEMIGRATE_KUBECTL to its path",
        error=ClusterError,
    )


def secret_values(name: str, secret: dict[str, Any]) -> dict[str, str]:
    """A Secret's `data` (base64-decoded) and `stringData`."""
    values: dict[str, str] = {}
    for key, encoded in (secret.get("data") or {}).items():
        try:
            values[key] = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ClusterError(
                f"Secret {name!r} key {key!r} is not base64-encoded UTF-8 text; fix the Secret"
            ) from None
    for key, text in (secret.get("stringData") or {}).items():
        values.setdefault(key, str(text))
    return values


def is_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status", {})
    if status.get("phase") != "Running":
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])
    )


def pod_state(pod: dict[str, Any]) -> str:
    phase = pod.get("status", {}).get("phase", "Unknown")
    return f"is {phase}, not Ready" if phase == "Running" else f"is {phase}"


PLAIN_ERRORS = (
    "error:",
    "Error from server",
    "Error in configuration",
    "Error:",
    "The connection to the server",
    "Unable to connect to the server",
)
KLOG_PREFIX = re.compile(r"^[EFW]\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] ")


def _last_error(stderr: str) -> str:
    """The line of kubectl's stderr that says what went wrong, without klog's prefix."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    plain = [line for line in lines if line.startswith(PLAIN_ERRORS)]
    logged = [KLOG_PREFIX.sub("", line) for line in lines if KLOG_PREFIX.match(line)]
    message = (plain or logged or lines or ["no error message"])[-1]
    return message.removeprefix("error: ")
