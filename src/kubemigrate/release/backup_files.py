"""A backup on disk: its file name (database, time, revision), its `.json` sidecar (sha256,
size, server and pg_dump versions), and reading them back: listing, retention, and checking a
file before a restore."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from kubemigrate import units
from kubemigrate.errors import BackupError
from kubemigrate.files import remove, shown, write_atomically
from kubemigrate.postgres.binaries import major_version

TOOL = "kubemigrate"


NAME = re.compile(r"^(?P<database>.+)_(?P<stamp>\d{8}T\d{6}\.\d{3}Z)_(?P<revision>[\w+-]+)\.dump$")


SHA256 = re.compile(r"^[0-9a-f]{64}$")
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


def timestamp() -> str:
    """Now in UTC, to the millisecond, for file names that sort by time."""
    text = datetime.now(UTC).strftime(STAMP)
    return text[:-4] + "Z"  # drop the last three digits of the microseconds


def write_sidecar(dump: Path, record: Backup) -> None:
    """The `.json` beside `dump`, written whole or not at all (OSError on failure)."""
    text = json.dumps(asdict(record), indent=2) + "\n"
    write_atomically(dump.with_suffix(".json"), text.encode(), private=True)


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


def shared(dump: Path) -> str:
    """What other accounts may do with a backup (its dump or its sidecar): "readable by
    others", "writable by others", or empty when it is its owner's alone."""
    from kubemigrate.files import others_may

    readable = writable = False
    for path in (dump, dump.with_suffix(".json")):
        try:
            can_read, can_write = others_may(path)
        except OSError:
            continue
        readable, writable = readable or can_read, writable or can_write
    if writable:
        return "writable by others"
    return "readable by others" if readable else ""


def require_unshared(dump: Path) -> None:
    """Refuse a backup (dump or sidecar) that other accounts may write: it could have been
    swapped; a `BackupError` saying why and what to do."""
    from kubemigrate.files import others_may

    for path in (dump, dump.with_suffix(".json")):
        try:
            writable = others_may(path)[1]
        except OSError:
            continue
        if writable:
            mode = oct(path.stat().st_mode & 0o777)[2:]
            raise BackupError(
                f"{shown(path)} can be written by other accounts (mode {mode}): someone could "
                f"have swapped it; check where it came from, make it yours alone with `chmod "
                f"600 {dump} {dump.with_suffix('.json')}`, or pass --force"
            )


def dump_major(record: Backup) -> int:
    """The major version of the pg_dump that wrote a backup: as its sidecar names it, else the
    server's (a pg_dump in the database pod is the server's own)."""
    named = re.search(r"\(PostgreSQL\) (\d+)", record.dumped_by)
    return int(named[1]) if named else major_version(record.server_version)


def safe_name(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name) or "database"


def age(record: Backup) -> str:
    """How long ago a backup was taken, e.g. '3h 12m'."""
    taken = datetime.strptime(record.created_at, STAMP).replace(tzinfo=UTC)
    return units.age((datetime.now(UTC) - taken).total_seconds())
