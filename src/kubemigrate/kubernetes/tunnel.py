"""The `kubectl port-forward` tunnel to the database.

kubectl picks a free local port (`:REMOTE`) and says which on its `Forwarding from
127.0.0.1:PORT -> REMOTE` line, which it prints once it listens: the tunnel is ready at that
line, with no sleeps and no probe connection (each connection through the tunnel costs the API
server a stream and the pod a dial; the database connection that follows is the real test).
If kubectl exits first, what it printed on stderr becomes the error.

kubectl runs in its own session (see `kubemigrate.process.children.start`), so a Ctrl-C meant for
the task reaches the task alone, which then closes the tunnel in order. The tunnel is closed on
every exit path: the opener's and the session's exit stacks, which Ctrl-C and SIGTERM reach too (see
`kubemigrate.process.interrupts`), and, should the task itself be killed outright, the kernel's
parent-death signal, which ends kubectl with it.
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING

from kubemigrate.errors import ClusterError
from kubemigrate.process import children, output

if TYPE_CHECKING:
    import sh

    from kubemigrate.kubernetes.kubectl import Kubectl

FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)")


class PortForward:
    """`kubectl port-forward RESOURCE :PORT` on 127.0.0.1: `start`, `ready`, `close`."""

    def __init__(
        self, kubectl: Kubectl, resource: str, remote_port: int, timeout: float = 30.0
    ) -> None:
        self.kubectl = kubectl
        self.resource = resource
        self.remote_port = remote_port
        self.timeout = timeout
        self.local_port: int | None = None
        self.process: sh.RunningCommand | None = None
        self._ready = threading.Event()
        self._stderr = output.Tail(keep=50)

    def start(self) -> None:
        """Start kubectl without waiting (from the main thread: see `die_with_parent`)."""
        self.process = children.start(
            self.kubectl.command(),
            "port-forward",
            self.resource,
            f":{self.remote_port}",
            "--address",
            "127.0.0.1",
            on_out=self._on_out,
            on_err=self._stderr,
            on_exit=self._ready.set,
        )

    def ready(self) -> int:
        """Wait until kubectl forwards (closing it on failure or interrupt); the local port."""
        try:
            if not self._ready.wait(self.timeout) or self.local_port is None:
                raise self._failure(f"no `Forwarding from` line within {self.timeout:g}s")
            if not self.alive:
                raise self._failure("kubectl exited")
        except BaseException:
            self.close()
            raise
        return self.local_port

    def close(self) -> None:
        """Stop kubectl and wait for it; safe to call twice."""
        process, self.process = self.process, None
        if process is not None:
            children.stop(process)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def exited(self, within: float = 1.0) -> bool:
        """Whether kubectl has exited, waiting up to `within` seconds: a connection through
        the tunnel sees its end a moment before the process is gone."""
        return self.process is None or children.exited(self.process, within)

    def exit_reason(self) -> str:
        """What kubectl said before it exited, or its exit code."""
        if self._stderr.lines:
            return self.kubectl.error(self._stderr.text, "forward").message.split(": ", 1)[-1]
        code = self.process.exit_code if self.process is not None else None
        return f"exit code {code}" if code is not None else "it exited"

    # -- readiness -------------------------------------------------------------------------------

    def _on_out(self, line: str) -> None:
        match = FORWARDING.search(line)
        if match and self.local_port is None:
            self.local_port = int(match.group(1))
            self._ready.set()

    def _failure(self, fallback: str) -> ClusterError:
        what = f"open a tunnel to {self.resource} port {self.remote_port}"
        if self.process is not None and not self.process.is_alive() and self._stderr.lines:
            return self.kubectl.error(self._stderr.text, what)
        return ClusterError(
            f"kubectl port-forward could not {what} in {self.kubectl.where}: {fallback}"
        )
