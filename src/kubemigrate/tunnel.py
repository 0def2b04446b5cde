"""The `kubectl port-forward` tunnel to the database.

kubectl picks a free local port (`:REMOTE`) and says which on its `Forwarding from
127.0.0.1:PORT -> REMOTE` line, which it prints once it listens: the tunnel is ready at that
line, with no sleeps and no probe connection (each connection through the tunnel costs the API
server a stream and the pod a dial; the database connection that follows is the real test).
If kubectl exits first, what it printed on stderr becomes the error.

kubectl runs in its own session, so a Ctrl-C meant for the task reaches the task alone, which
then closes the tunnel in order. The tunnel is closed on every exit path: the context manager's
exit, which Ctrl-C and SIGTERM reach too (see `kubemigrate.interrupts`), and, should the task
itself be killed outright, the kernel's parent-death signal, which ends kubectl with it.
"""

from __future__ import annotations

import ctypes
import re
import signal
import sys
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any

from kubemigrate.kube import Kubectl, KubectlError

if TYPE_CHECKING:
    import sh

FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)")
PR_SET_PDEATHSIG = 1
STOP_TIMEOUT = 5.0


class TunnelError(KubectlError):
    """The tunnel could not be opened, or was lost."""


class PortForward:
    """`kubectl port-forward RESOURCE :PORT` on 127.0.0.1, as a context manager."""

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
        self._stderr: list[str] = []

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> PortForward:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> int:
        """Start kubectl and wait until it forwards; the local port."""
        self.start()
        return self.ready()

    def start(self) -> None:
        """Start kubectl without waiting; `ready()` waits."""
        self.process = self.kubectl.command()(
            "port-forward",
            self.resource,
            f":{self.remote_port}",
            "--address",
            "127.0.0.1",
            _bg=True,
            _bg_exc=False,
            _tty_out=False,
            _out=self._on_out,
            _err=self._on_err,
            _new_session=True,
            _preexec_fn=die_with_parent,
            _done=lambda *_: self._ready.set(),
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
        if process is None or not process.is_alive():
            return
        process.terminate()
        if not _wait(process, STOP_TIMEOUT):
            process.kill()
            _wait(process, STOP_TIMEOUT)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def exited(self, within: float = 1.0) -> bool:
        """Whether kubectl has exited, waiting up to `within` seconds: a connection through
        the tunnel sees its end a moment before the process is gone."""
        if self.process is None:
            return True
        return _wait(self.process, within)

    def exit_reason(self) -> str:
        """What kubectl said before it exited, or its exit code."""
        if self._stderr:
            return self.kubectl.error("\n".join(self._stderr), "forward").message.split(": ", 1)[-1]
        code = self.process.exit_code if self.process is not None else None
        return f"exit code {code}" if code is not None else "it exited"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    # -- readiness -------------------------------------------------------------------------------

    def _on_out(self, line: str) -> None:
        match = FORWARDING.search(line)
        if match and self.local_port is None:
            self.local_port = int(match.group(1))
            self._ready.set()

    def _on_err(self, line: str) -> None:
        if len(self._stderr) < 50:
            self._stderr.append(line.rstrip())

    def _failure(self, fallback: str) -> TunnelError:
        what = f"open a tunnel to {self.resource} port {self.remote_port}"
        if self.process is not None and not self.process.is_alive() and self._stderr:
            error = self.kubectl.error("\n".join(self._stderr), what)
            return TunnelError(error.message)
        return TunnelError(
            f"kubectl port-forward could not {what} in {self.kubectl.where}: {fallback}"
        )


def _wait(process: Any, timeout: float) -> bool:
    """Wait for a background sh process; True once it has exited."""
    import sh

    try:
        process.wait(timeout=timeout)
    except sh.TimeoutException:
        return False
    except (sh.ErrorReturnCode, sh.SignalException):
        pass
    return True


def die_with_parent() -> None:
    """In the child: ask the kernel to send SIGTERM when the parent dies (Linux only)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
