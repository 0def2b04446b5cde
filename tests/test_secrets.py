"""The password never leaves the processes that need it.

With a sentinel password (the suite's, full of `@ : / % ' "` and spaces) read from a Secret, run
upgrade, backup, restore and verify through the tunnel, plus an error path and invoke's debug
output, while a thread reads every process's command line and environment. The sentinel may
appear only in the environment of pg_dump / pg_restore (the one child that needs it), never in
a command line, in anything printed, or in any file written.
"""

from pathlib import Path

import pytest

from tests.conftest import NS, PASSWORD, Project
from tests.watching import ProcessWatcher

SENTINEL = PASSWORD.encode()

pytestmark = pytest.mark.e2e


def test_the_password_stays_where_it_belongs(k8s: Project, tmp_path: Path) -> None:
    watcher = ProcessWatcher(PASSWORD)
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
