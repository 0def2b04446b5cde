"""kubemigrate on every PostgreSQL major version users run: 13, 14, 15, 16, 17 and 18.

Each test runs on a fresh database of one major version (tests/servers.py: 18 is the suite's
own server, 13 to 17 come from `python scripts/fetch_postgres.py`; a missing one is skipped, or
fails under CI), through the tasks as a user types them, with DATABASE_URL pointing at it:

- the round trip: `db.upgrade`, rows written, `db.backup` (its sidecar names the server's
  major), the tables dropped (`db.downgrade base`), `db.restore FILE --yes`, the rows back,
  `db.current` at head, `db.verify` passing;
- the plan: `db.plan --rehearse` of one pending revision reports it, rehearsed on a copy of the
  target's schema (the copy is on the project's embedded PostgreSQL 18, as for a user), and
  squawk is told the target's major (`--pg-version`): squawk 2.70 has no rule that differs
  between 13 and 18, so a squawk on PATH that records its arguments is what shows it.

The client programs are the embedded 18's (pg_dump, pg_restore): a user's newest, as the
backups take a pg_dump at least as new as the server.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from kubemigrate.postgres.binaries import major_version
from kubemigrate.postgres.embedded import EmbeddedPostgres
from tests.conftest import Project, Server
from tests.servers import MAJORS, major_id

pytest_plugins = ["tests.servers"]
pytestmark = pytest.mark.e2e

Databases = Callable[[int], tuple[Server, str]]
PENDING = "a0a0a0a0a0a0"


def project_on(tmp_path: Path, server: Server, database: str) -> Project:
    """A copy of the project whose DATABASE_URL is `database` on `server`."""
    (tmp_path / "project").mkdir()
    project = Project(tmp_path / "project")
    project.env["DATABASE_URL"] = server.url(database)
    return project


def seed(server: Server, database: str) -> None:
    """Three users with a book each."""
    server.execute(
        'INSERT INTO "user" (email, name, created_at) '
        "SELECT 'u' || i || '@example.com', 'user ' || i, now() FROM generate_series(1, 3) i",
        database=database,
    )
    server.execute(
        "INSERT INTO book (title, author, owner_id) SELECT 'title', 'author', id FROM \"user\"",
        database=database,
    )


def rows(server: Server, database: str) -> list[tuple[object, ...]]:
    """Every user's email with its book's title, in order."""
    return server.execute(
        'SELECT u.email, b.title FROM "user" u JOIN book b ON b.owner_id = u.id ORDER BY u.id',
        database=database,
    )


def upgraded(project: Project) -> None:
    result = project.inv("db.upgrade")
    assert result.code == 0, result.output


@pytest.mark.parametrize("major", MAJORS, ids=major_id)
def test_backup_restore_verify(major: int, major_database: Databases, tmp_path: Path) -> None:
    server, database = major_database(major)
    project = project_on(tmp_path, server, database)
    upgraded(project)
    seed(server, database)
    before = rows(server, database)
    assert len(before) == 3

    made = project.inv("db.backup")
    assert made.code == 0, made.output
    dump = Path(made.stdout.strip().splitlines()[-1])
    sidecar = json.loads(dump.with_suffix(".json").read_text())
    assert major_version(sidecar["server_version"]) == major, sidecar

    dropped = project.inv("db.downgrade", "base")
    assert dropped.code == 0, dropped.output
    assert server.execute("SELECT to_regclass('book')", database=database) == [(None,)]

    restored = project.inv("db.restore", str(dump), "--yes")
    assert restored.code == 0, restored.output
    assert rows(server, database) == before
    current = project.inv("db.current")
    assert current.code == 0 and "(head)" in current.stdout, current.output

    verified = project.inv("db.verify")
    assert verified.code == 0, verified.output


def recording_squawk(directory: Path) -> Path:
    """A `squawk` in `directory` that appends its arguments, a line per call, to
    `directory/squawk.log` and runs the real one; the log's path."""
    beside_python = str(Path(sys.executable).parent)
    real = shutil.which("squawk") or shutil.which("squawk", path=beside_python)
    assert real, "squawk is not installed"
    log = directory / "squawk.log"
    shim = directory / "squawk"
    shim.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{real}" "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return log


@pytest.mark.parametrize("major", MAJORS, ids=major_id)
def test_plan_rehearses_with_the_target_major(
    major: int, major_database: Databases, tmp_path: Path
) -> None:
    server, database = major_database(major)
    project = project_on(tmp_path, server, database)
    upgraded(project)
    seed(server, database)
    head = project.head()
    project.add_revision(PENDING, head, 'op.alter_column("book", "id", type_=sa.BigInteger())')
    (tmp_path / "bin").mkdir()
    log = recording_squawk(tmp_path / "bin")

    try:
        shown = project.inv(
            "db.plan",
            "--rehearse",
            "--format",
            "json",
            "--fail-on",
            "never",
            PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        )
    finally:  # the rehearsal stops the project's embedded server itself; should it not have
        EmbeddedPostgres(project.root / ".kubemigrate" / "pgdata").stop()
    assert shown.code == 0, shown.output
    report = json.loads(shown.stdout)
    assert [r["revision"] for r in report["revisions"]] == [PENDING]
    rehearsal = report["rehearsal"]
    assert rehearsal["failed"] is None, rehearsal
    assert rehearsal["schema"].startswith("the target's schema"), rehearsal
    # The copy is on the project's embedded server (18), whatever the target's version.
    assert rehearsal["server"].startswith("PostgreSQL 18."), rehearsal
    ((statement,),) = [r["rehearsed"] for r in report["revisions"]]
    assert statement["rewrites"] == ["book"], statement
    assert statement["locks"]["book"] == "ACCESS EXCLUSIVE", statement

    calls = log.read_text().splitlines()
    assert calls and all(f"--pg-version {major}.0" in call for call in calls), calls

    # The target is only read: still at its head, the revision not applied.
    current = project.inv("db.current")
    assert head in current.stdout and PENDING not in current.stdout, current.output
