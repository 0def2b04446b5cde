"""A thread that watches every process's command line and environment for a password.

The password may sit only in the environment of the children that need it (pg_dump,
pg_restore, the child Alembic process, a migration Job's container), never in a command line or
anywhere else.
"""

import os
import threading
import time
from pathlib import Path
from urllib.parse import quote

# Programs that may hold it, in their environment only: by name, or by a mark in the command line.
# `python -m kubemigrate` is a migration Job's container, run by the test Kubernetes API server.
MAY_HOLD_IT = (b"pg_dump", b"pg_restore", b"kubemigrate.migrations.isolated_main", b"kubemigrate")


class ProcessWatcher(threading.Thread):
    """Reads /proc/*/cmdline and /proc/*/environ of every process until stopped."""

    def __init__(self, sentinel: str) -> None:
        super().__init__(daemon=True)
        # as it is, and percent-encoded as a URL holds it
        self.forms = {
            form.encode()
            for form in (sentinel, quote(sentinel, safe=""), quote(sentinel, safe=" +"))
        }
        self.stop = threading.Event()
        self.leaks: list[str] = []
        self.holders: set[bytes] = set()  # programs seen holding it where they may
        self.seen = 0
        self.root = os.getpid()  # only this test's processes: other workers run other tests

    def __enter__(self) -> "ProcessWatcher":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join(10)

    def run(self) -> None:
        known: dict[str, bytes] = {}  # pid -> the command line its environment was read under
        me = str(threading.get_native_id())
        while not self.stop.is_set():
            for pid in os.listdir("/proc"):
                if pid.isdigit() and pid != me:
                    self._look(pid, known)
            time.sleep(0.001)

    def _look(self, pid: str, known: dict[str, bytes]) -> None:
        entry = Path("/proc", pid)
        try:
            before = (entry / "cmdline").read_bytes()
            if known.get(pid, b"") == before != b"":
                return  # the environment is set at exec, which changes the command line
            if not descends(pid, self.root):
                known[pid] = before
                return
            environ = (entry / "environ").read_bytes()
            cmdline = identity(entry)
            comm = (entry / "comm").read_bytes().strip()
        except OSError:
            return
        if before == cmdline:  # else it exec'd meanwhile: read it again next time
            known[pid] = cmdline
        self.seen += 1
        if any(form in cmdline for form in self.forms):
            self.leaks.append(f"command line of {cmdline!r}")
        if not any(form in environ for form in self.forms):
            return
        name = Path(cmdline.split(b"\0")[0].decode(errors="replace")).name.encode() or comm
        allowed = [mark for mark in MAY_HOLD_IT if mark == name or mark in cmdline.split(b"\0")]
        if allowed:
            self.holders.add(allowed[0])
        else:
            self.leaks.append(f"environment of {comm!r} {cmdline[:80]!r}")


def descends(pid: str, root: int) -> bool:
    """Whether process `pid` is `root` or one of its descendants (following parent ids)."""
    current = int(pid)
    for _ in range(64):
        if current == root:
            return True
        if current <= 1:
            return False
        current = _parent(current)
    return False


def ours(pid: int, root: int) -> bool:
    """Whether process `pid` belongs to this test worker `root`: it descends from it, or it is
    an orphan (a child left behind, reparented). Under pytest-xdist, processes below a sibling
    of `root` (the other worker, started by the same controller) are not."""
    controller = os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else None
    current = pid
    for _ in range(64):
        if current == root:
            return True
        if current <= 1:
            return True  # an orphan: it may be one this worker left behind
        parent = _parent(current)
        if controller is not None and parent == controller:
            return False  # below the other worker
        current = parent
    return False


def _parent(pid: int) -> int:
    stat = Path("/proc", str(pid), "stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def identity(entry: Path) -> bytes:
    """A process's command line. One caught in its exec reads an empty one for a moment, so
    look again; one caught exiting stays empty, and its name (comm) then says what it was."""
    for _ in range(20):
        cmdline = (entry / "cmdline").read_bytes()
        if cmdline:
            return cmdline
        time.sleep(0.0005)
    return b""
