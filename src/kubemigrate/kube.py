"""kubectl, through `sh`: Secrets, pods and services, with errors a user can act on.

All cluster access is the user's own kubectl, so every kubeconfig, context and auth plugin
works. `--context` and `--namespace` are always passed explicitly: when no context is
configured, the kubeconfig's current context is read once and then named on every call, so one
invocation never drifts between clusters.

kubectl's failures are told apart by what it prints (its messages are stable across
versions): a missing binary, an unreachable API server, refused credentials, a forbidden
request, an unknown context, a missing namespace, Secret or key each get their own message.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import shutil
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from kubemigrate.errors import KubemigrateError

if TYPE_CHECKING:
    import sh

    from kubemigrate.settings import Settings

REQUEST_TIMEOUT = "20s"
T = TypeVar("T")
U = TypeVar("U")


class KubectlError(KubemigrateError):
    """kubectl could not do what was asked."""


class NotFoundError(KubectlError):
    """The API server answered NotFound."""


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
        path = shutil.which(self.binary)
        if path is None:
            raise KubectlError(
                f"kubectl not found: {self.binary!r} is not on PATH; install kubectl or set "
                "KUBEMIGRATE_KUBECTL to its path"
            )
        args = [path]
        if self.kubeconfig:
            args += ["--kubeconfig", self.kubeconfig]
        if self.context:
            args += ["--context", self.context]
        if namespaced:
            args += ["--namespace", self.namespace]
        return args

    def command(self, *, namespaced: bool = True) -> sh.Command:
        """`kubectl` as an sh command with the options of `argv` baked in."""
        import sh

        # At DEBUG, sh logs the first bytes of what passes to and from kubectl: a Secret's
        # data, the password line for pg_dump in the pod. It never logs below WARNING, whatever
        # the root logger says (`inv --debug` sets DEBUG).
        logging.getLogger("sh").setLevel(logging.WARNING)
        path, *args = self.argv(namespaced=namespaced)
        return sh.Command(path).bake(*args)

    def start(
        self, *args: str, what: str, namespaced: bool = True, short: bool = True
    ) -> Pending[str]:
        """Start kubectl in the background; `.result()` waits for its output. Lookups that do
        not depend on each other are started together this way.

        `short` requests get kubectl's --request-timeout, so an API server that does not
        answer fails the task instead of hanging it; watches (rollout status) bring their own.
        """
        timeout = [f"--request-timeout={REQUEST_TIMEOUT}"] if short else []
        process = self.command(namespaced=namespaced)(
            *args, *timeout, _bg=True, _bg_exc=False, _tty_out=False
        )
        return Pending(self, process, what, str)

    def run(self, *args: str, what: str, namespaced: bool = True, short: bool = True) -> str:
        """Run kubectl and return its output; failures become KubectlError."""
        return self.start(*args, what=what, namespaced=namespaced, short=short).result()

    def start_get(
        self,
        kind: str,
        name: str | None = None,
        *,
        selector: str | None = None,
        hint: str | None = None,
    ) -> Pending[dict[str, Any]]:
        """`kubectl get KIND [NAME] [-l SELECTOR] -o json`, started; `.result()` is parsed.

        Given a `hint`, a missing object is told apart from a missing namespace."""
        label = kind.capitalize()
        what = f"read {label} {name!r}" if name else f"list {kind} matching {selector!r}"
        args = ["get", kind, *([name] if name else []), "-o", "json"]
        if selector:
            args += ["-l", selector]
        pending = self.start(*args, what=what).then(json.loads)
        if hint is not None:

            def missing() -> KubectlError:
                self.require_namespace()
                return KubectlError(f"{label} {name!r} does not exist in {self.where}; {hint}")

            pending.missing = missing
        return pending

    def current_context(self) -> str:
        """The kubeconfig's current context, read once so later calls can name it."""
        output = self.run(
            "config", "current-context", what="read the current context", namespaced=False
        )
        return output.strip()

    # -- errors ----------------------------------------------------------------------------------

    def error(self, stderr: str, what: str) -> KubectlError:
        """One message for kubectl's failure to `what`, told apart by its stderr."""
        text = " ".join(stderr.split())
        detail = _last_error(stderr)
        context = self.context or "(current)"
        if re.search(r'context "[^"]*" does not exist|context was not found', text):
            return KubectlError(
                f"kubeconfig has no context {context!r}; `kubectl config get-contexts` lists them"
            )
        if "Unable to connect to the server" in text or re.search(
            r"connection refused|no such host|i/o timeout|dial tcp|TLS handshake timeout", text
        ):
            return KubectlError(
                f"cannot reach the Kubernetes API server of context {context!r} to {what}: {detail}"
            )
        if "(Unauthorized)" in text or "You must be logged in" in text:
            return KubectlError(
                f"the cluster of context {context!r} refused kubectl's credentials: log in again "
                "or check the kubeconfig"
            )
        if "(Forbidden)" in text:
            return KubectlError(f"kubectl is not allowed to {what} in {self.where}: {detail}")
        if "(NotFound)" in text:
            return NotFoundError(f"cannot {what}: {detail} in {self.where}")
        return KubectlError(f"kubectl failed to {what} in {self.where}: {detail}")

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
            raise KubectlError(
                f"namespace {self.namespace!r} does not exist in context {self.context!r}; "
                "check KUBEMIGRATE_NAMESPACE"
            ) from None

    # -- objects ---------------------------------------------------------------------------------

    def secret(self, name: str) -> dict[str, str]:
        """A Secret's data, base64-decoded, held in memory only."""
        return self.start_secret(name).result()

    def start_secret(self, name: str) -> Pending[dict[str, str]]:
        pending = self.start_get("secret", name, hint="check KUBEMIGRATE_DB_SECRET")
        return pending.then(lambda secret: secret_values(name, secret))

    def ready_pod(self, selector: str) -> str:
        """The name of a Running, Ready pod matching `selector`."""
        return self.start_ready_pod(selector).result()

    def start_ready_pod(self, selector: str) -> Pending[str]:
        def first_ready(found: dict[str, Any]) -> str:
            pods = found.get("items", [])
            if not pods:
                self.require_namespace()
                raise KubectlError(f"no pod matches {selector!r} in {self.where}")
            for pod in pods:
                if is_ready(pod):
                    return str(pod["metadata"]["name"])
            states = ", ".join(f"{p['metadata']['name']} {pod_state(p)}" for p in pods)
            raise KubectlError(
                f"no Ready pod matches {selector!r} in {self.where} ({states}); wait for the "
                "database pod to become Ready"
            )

        return self.start_get("pods", selector=selector).then(first_ready)

    def ready_pod_behind(self, service: str, endpoints: Pending[list[str]] | None = None) -> str:
        """The name of a Ready pod behind Service `service`.

        The Service's EndpointSlices tell in one request (`endpoints`, when already started);
        when they list no Ready pod, or cannot be read, the Service and its pods are read, to
        find one or to say exactly why there is none.
        """
        try:
            ready = (endpoints or self.start_endpoints(service)).result()
        except KubectlError:
            ready = []
        return ready[0] if ready else self.ready_pod(self.service_selector(service))

    def start_endpoints(self, service: str) -> Pending[list[str]]:
        """The Ready pods that the Service's EndpointSlices list, started."""

        def ready_pods(found: dict[str, Any]) -> list[str]:
            return [
                endpoint["targetRef"]["name"]
                for item in found.get("items", [])
                for endpoint in item.get("endpoints") or []
                if endpoint.get("conditions", {}).get("ready")
                and endpoint.get("targetRef", {}).get("kind") == "Pod"
            ]

        selector = f"kubernetes.io/service-name={service}"
        return self.start_get("endpointslices", selector=selector).then(ready_pods)

    def service_selector(self, name: str) -> str:
        """The pod selector of Service `name`, as a label selector string."""
        return self.start_service_selector(name).result()

    def start_service_selector(self, name: str) -> Pending[str]:
        def selector_of(service: dict[str, Any]) -> str:
            selector = service.get("spec", {}).get("selector") or {}
            if not selector:
                raise KubectlError(
                    f"Service {name!r} has no pod selector; set KUBEMIGRATE_DB_SELECTOR"
                )
            return ",".join(f"{key}={value}" for key, value in sorted(selector.items()))

        hint = "check KUBEMIGRATE_DB_SERVICE or set KUBEMIGRATE_DB_SELECTOR"
        return self.start_get("service", name, hint=hint).then(selector_of)


@dataclass
class Pending(Generic[T]):
    """A kubectl command running in the background. `result()` waits for it and reads its
    output; kubectl's failure becomes a KubectlError, and an interrupt while waiting (Ctrl-C,
    SIGTERM) stops it, so no kubectl outlives the task."""

    kubectl: Kubectl
    process: sh.RunningCommand
    what: str
    read: Callable[[str], T]
    missing: Callable[[], KubectlError] | None = None

    def then(self, read: Callable[[T], U]) -> Pending[U]:
        """The same command, its output read further by `read`."""
        first = self.read
        return Pending(
            self.kubectl, self.process, self.what, lambda out: read(first(out)), self.missing
        )

    def result(self) -> T:
        import sh

        try:
            self.process.wait()
        except sh.ErrorReturnCode as exc:
            error = self.kubectl.error(exc.stderr.decode(errors="replace"), self.what)
            if isinstance(error, NotFoundError) and self.missing is not None:
                error = self.missing()
            raise error from None
        except BaseException:
            self.cancel()
            raise
        return self.read(self.process.stdout.decode(errors="replace"))

    def cancel(self) -> None:
        """Stop kubectl if it still runs."""
        if self.process.is_alive():
            self.process.terminate()
            with suppress(Exception):
                self.process.wait()


def secret_values(name: str, secret: dict[str, Any]) -> dict[str, str]:
    """A Secret's `data` (base64-decoded) and `stringData`."""
    values: dict[str, str] = {}
    for key, encoded in (secret.get("data") or {}).items():
        try:
            values[key] = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise KubectlError(
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
