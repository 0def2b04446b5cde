"""Writing files so that a failure leaves nothing half-done, and saying why a write failed.

Every file kubemigrate writes (a backup and its sidecar, `db.init`'s files) is written under a
temporary name in its own directory (`.<name>.partial`), flushed to the disk, and renamed only
when complete: a rename within a directory is atomic, so a reader sees the whole file or none.
On any failure what was written is removed again.

A write fails for a handful of reasons a user can act on, told apart by errno: the disk is
full (ENOSPC, EDQUOT), the file system is read-only (EROFS), the directory is not writable
(EACCES, EPERM) or missing (ENOENT). `kubemigrate.errors.reason` says which in a few words, and
`cannot_write` makes the one line the user sees.
"""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

from kubemigrate.errors import reason, shown_path


def cannot_write(
    what: str, path: Path | str, exc: OSError, outcome: str = "nothing was kept"
) -> str:
    """The one line for a failed write: 'cannot write the backup to backups/x.dump: the disk
    is full (No space left on device); nothing was kept'."""
    return f"cannot write {what} to {shown(path)}: {reason(exc)}; {outcome}"


def shown(path: Path | str) -> str:
    """`path` relative to the current directory when it lies under it, else as it is."""
    return shown_path(path, Path.cwd())


def partial(path: Path) -> Path:
    """The temporary name `path` is written under, in the same directory."""
    return path.with_name(f".{path.name}.partial")


def sync(out: BinaryIO) -> None:
    """Flush `out` to the disk, so that a write the kernel deferred fails here, not later."""
    out.flush()
    os.fsync(out.fileno())


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` all at once or not at all (OSError on failure)."""
    stage(path, data).rename(path)


def stage(path: Path, data: bytes) -> Path:
    """Write `data`, synced, under `path`'s temporary name and return that name: renaming it
    to `path` finishes the write. On failure nothing is left and the OSError goes on."""
    temporary = partial(path)
    try:
        with temporary.open("wb") as out:
            out.write(data)
            sync(out)
    except BaseException:
        remove(temporary)
        raise
    return temporary


def remove(*paths: Path) -> None:
    """Remove files, quietly: what is already gone, or cannot go, is left alone."""
    for path in paths:
        with suppress(OSError):
            path.unlink()


def make_directories(path: Path) -> list[Path]:
    """Create directory `path` and its missing parents; the directories created, deepest
    first (to remove them again should what follows fail). On failure the ones it created
    are removed and the OSError goes on."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    created: list[Path] = []
    try:
        for directory in reversed(missing):
            try:
                directory.mkdir()
            except FileExistsError:
                if not directory.is_dir():
                    raise
                continue  # made meanwhile by another run
            created.insert(0, directory)
    except BaseException:
        remove_directories(created)
        raise
    return created


def remove_directories(created: list[Path]) -> None:
    """Remove directories `make_directories` created (deepest first), if they are empty."""
    for directory in created:
        with suppress(OSError):
            directory.rmdir()


def create_ignored(path: Path) -> None:
    """Create directory `path` (and its parents); the top-most directory created gets a
    `.gitignore` of `*`, so what kubemigrate writes there (the embedded server's data, backups)
    stays out of the project's git. All or nothing: on failure (an OSError) the directories it
    made are removed again."""
    created = make_directories(path)
    if not created:
        return
    try:
        write_atomically(
            created[-1] / ".gitignore",
            b"# Written by kubemigrate: nothing here belongs in git.\n*\n",
        )
    except BaseException:
        remove_directories(created)
        raise
