"""Writing files so that a failure leaves nothing half-done, and saying why a write failed.

Every file kubemigrate writes (a backup and its sidecar, `db.init`'s files) is written under a
temporary name in its own directory (`.<name>.partial`), flushed to the disk, and renamed only
when complete: a rename within a directory is atomic, so a reader sees the whole file or none.
On any failure what was written is removed again.

What holds data or credentials (a backup, its sidecar, a schema dump, the embedded server's
files) is its owner's alone: such a file is created 0600 (`private_file`: opened with that mode
and set to it before a byte is written, whatever the umask) in directories created 0700
(`make_directories(private=True)`). A dump holds every row of the database; a shared CI runner
or laptop has other accounts.

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


PRIVATE_FILE = 0o600
PRIVATE_DIRECTORY = 0o700
# The permission bits that let other accounts read, or write, a file.
READABLE_BY_OTHERS = 0o044
WRITABLE_BY_OTHERS = 0o022


def private_file(path: Path) -> BinaryIO:
    """`path` opened for writing, created (or truncated) owner-only: 0600 from the first byte,
    whatever the umask (which may only take bits away, down to none for the owner)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        os.fchmod(descriptor, PRIVATE_FILE)
    except BaseException:
        os.close(descriptor)
        raise
    return os.fdopen(descriptor, "wb")


def write_atomically(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write `data` to `path` all at once or not at all (OSError on failure); `private`:
    owner-only (0600)."""
    stage(path, data, private=private).rename(path)


def stage(path: Path, data: bytes, *, private: bool = False) -> Path:
    """Write `data`, synced, under `path`'s temporary name and return that name: renaming it
    to `path` finishes the write. On failure nothing is left and the OSError goes on."""
    temporary = partial(path)
    try:
        with private_file(temporary) if private else temporary.open("wb") as out:
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


def make_directories(path: Path, *, private: bool = False) -> list[Path]:
    """Create directory `path` and its missing parents (`private`: each 0700, whatever the
    umask); the directories created, deepest first (to remove them again should what follows
    fail). On failure the ones it created are removed and the OSError goes on."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    created: list[Path] = []
    try:
        for directory in reversed(missing):
            try:
                directory.mkdir(mode=PRIVATE_DIRECTORY if private else 0o777)
            except FileExistsError:
                if not directory.is_dir():
                    raise
                continue  # made meanwhile by another run
            created.insert(0, directory)
            if private:
                directory.chmod(PRIVATE_DIRECTORY)  # empty yet: no one saw it otherwise
    except BaseException:
        remove_directories(created)
        raise
    return created


def others_may(path: Path) -> tuple[bool, bool]:
    """Whether other accounts (group or others) may read, and may write, the file at `path`."""
    mode = path.stat().st_mode
    return bool(mode & READABLE_BY_OTHERS), bool(mode & WRITABLE_BY_OTHERS)


def remove_directories(created: list[Path]) -> None:
    """Remove directories `make_directories` created (deepest first), if they are empty."""
    for directory in created:
        with suppress(OSError):
            directory.rmdir()


def create_ignored(path: Path, *, private: bool = False) -> None:
    """Create directory `path` (and its parents; `private`: 0700); the top-most directory
    created gets a `.gitignore` of `*`, so what kubemigrate writes there (the embedded server's
    data, backups) stays out of the project's git. All or nothing: on failure (an OSError) the
    directories it made are removed again."""
    created = make_directories(path, private=private)
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
