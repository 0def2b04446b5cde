"""The password never leaves the processes that need it.

With a sentinel password (the suite's, full of `@ : / % ' "` and spaces) read from a Secret, run
upgrade, backup, restore and verify through the tunnel, plus an error path and invoke's debug
output, while a thread reads every process's command line and environment. The sentinel may
appear only in the environment of pg_dump / pg_restore (the one child that needs it), never in
a command line, in anything printed, or in any file written.
"""

import os
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import NS, PASSWORD, Project

pytestmark = pytest.mark.e2e

SENTINEL = PASSWORD.encode()
MAY_HOLD_IT = (b"pg_dump", b"pg_restore")  # in their environment only


class ProcessWatcher(threading.Thread):
    """Reads /proc/*/cmdline and /proc/*/environ of every process until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.leaks: list[str] = []
        self.holders: set[bytes] = set()  # programs seen holding it where they may
        self.seen = 0

    def run(self) -> None:
        known: dict[str, bytes] = {}  # pid -> the command line its environment was read under
        me = str(threading.get_native_id())
        while not self.stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or pid == me:
                    continue
                entry = Path("/proc", pid)
                try:
                    before = (entry / "cmdline").read_bytes()
                    if known.get(pid, b"") == before != b"":
                        continue  # the environment is set at exec, which changes the command line
                    environ = (entry / "environ").read_bytes()
                    cmdline = identity(entry)
                    comm = (entry / "comm").read_bytes().strip()
                except OSError:
                    continue
                if before == cmdline:  # else it exec'd meanwhile: read it again next time
                    known[pid] = cmdline
                self.seen += 1
                if SENTINEL in cmdline:
                    self.leaks.append(f"command line of {cmdline!r}")
                name = Path(cmdline.split(b"\0")[0].decode(errors="replace")).name.encode()
                program = name or comm
                if SENTINEL in environ:
                    if program in MAY_HOLD_IT:
                        self.holders.add(program)
                    else:
                        self.leaks.append(f"environment of {comm!r} {cmdline[:80]!r}")
            time.sleep(0.001)


def identity(entry: Path) -> bytes:
    """A process's command line. One caught in its exec reads an empty one for a moment, so
    look again; one caught exiting stays empty, and its name (comm) then says what it was."""
    for _ in range(20):
        cmdline = (entry / "cmdline").read_bytes()
        if cmdline:
            return cmdline
        time.sleep(0.0005)
    return b""


def test_the_password_stays_where_it_belongs(k8s: Project, tmp_path: Path) -> None:
    watcher = ProcessWatcher()
    watcher.start()
    outputs = []
    try:
        outputs.append(k8s.inv("--debug", "db.upgrade", "--env", NS))
        # --debug turns on DEBUG logging: sh would log the start of the pod's standard input.
        backup = k8s.inv("--debug", "db.backup", "--env", NS)
        outputs.append(backup)
        outputs.append(
            k8s.inv("--debug", "db.restore", backup.stdout.strip(), "--yes", "--env", NS)
        )
        outputs.append(k8s.inv("db.verify", "--json", "--env", NS))
        outputs.append(k8s.inv("release", "--dry-run", "--env", NS))
        # An error path: the wrong database name makes the server refuse after authentication.
        outputs.append(
            k8s.inv(
                "db.current",
                "--env",
                NS,
                KUBEMIGRATE_SECRET_DATABASE_KEY="x",
                KUBEMIGRATE_DB_NAME="no_such_database",
            )
        )
    finally:
        watcher.stop.set()
        watcher.join(10)
    assert [r.code for r in outputs] == [0, 0, 0, 0, 0, 1], [r.output for r in outputs]
    assert watcher.leaks == []
    # It really looked: it saw the password where it belongs, in pg_dump's or pg_restore's
    # environment (a dump of this small database can end between two looks, so either will do).
    assert watcher.holders
    for result in outputs:  # printed as a repr, the quote would be escaped: the start too
        assert PASSWORD not in result.output and PASSWORD[:11] not in result.output
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SENTINEL not in path.read_bytes(), path
