"""Errors a user can act on, all in one place.

Every expected failure is a `KubemigrateError` whose message is one line saying what failed and
what to do, and its `exit_code` (1 unless the failure has its own, such as a Job container's).
The task layer turns it into invoke's `Exit`, so the user sees that line and a non-zero exit,
never a traceback. Messages never contain a password: build them from masked
URLs and names, not from raw connection strings.

The subclasses say which part failed, for callers that handle one kind differently:

- `SettingsError`: a setting is unknown, malformed or missing;
- `DatabaseError`: PostgreSQL (the embedded server included) cannot be reached or refused;
- `MigrationError`: Alembic refused a command, the migrations are not fit to run, or a
  migration Job failed in the cluster (its exit code is the container's);
- `ClusterError`: kubectl could not do what was asked (tunnel, lookups, apply, rollout);
  `NotFoundError` when the API server answered NotFound;
- `BackupError`: a backup or restore could not be made or trusted;
- `ProjectError`: the project's own env.py, models or settings raised an exception.
"""

from __future__ import annotations

import errno
import traceback
from collections.abc import Iterable
from pathlib import Path


class KubemigrateError(Exception):
    """A failure with a message meant for the user."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code or 1

    def __str__(self) -> str:
        return self.message


class SettingsError(KubemigrateError):
    """A setting is unknown, malformed or missing."""


class DatabaseError(KubemigrateError):
    """The database cannot be reached or refused what was asked."""


class MigrationError(KubemigrateError):
    """Alembic refused a command (unknown revision, several heads, not at head...)."""


class ClusterError(KubemigrateError):
    """kubectl could not do what was asked."""


class NotFoundError(ClusterError):
    """The API server answered NotFound."""


class BackupError(KubemigrateError):
    """A backup or restore could not be made or trusted."""


class ProjectError(KubemigrateError):
    """The project's own code (its env.py, models or settings) raised an exception."""

    @classmethod
    def from_exception(
        cls, exc: BaseException, project: Path, hidden: Iterable[str] = ()
    ) -> ProjectError:
        """One line: the project's file and line where `exc` was raised (the innermost frame
        under `project`, else the innermost of all), the exception's type and first line; any
        `hidden` value (a password, a URL holding one) shown as ***."""
        frames = traceback.extract_tb(exc.__traceback__)
        own = [
            f for f in frames if _under(f.filename, project) and "site-packages" not in f.filename
        ]
        where = ""
        if isinstance(exc, SyntaxError) and exc.filename:  # where the file fails to parse
            where = f"{shown_path(exc.filename, project)}:{exc.lineno}: "
            exc = SyntaxError(exc.msg)
        elif own or frames:
            frame = (own or frames)[-1]
            where = f"{shown_path(frame.filename, project)}:{frame.lineno}: "
        text = str(exc).strip().splitlines()
        first = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
        message = (
            f"{where}{first} (in the project's own code; run with --debug or "
            "KUBEMIGRATE_TRACEBACK=true for the traceback)"
        )
        return cls(redact(message, hidden))


def wants_traceback(setting: bool) -> bool:
    """Whether a project error shows its traceback: the `KUBEMIGRATE_TRACEBACK` setting, or
    `inv --debug` (invoke turns on DEBUG logging)."""
    import logging

    return setting or logging.getLogger().isEnabledFor(logging.DEBUG)


def redact(text: str, hidden: Iterable[str]) -> str:
    """`text` with every non-empty `hidden` value, and its percent-encoded form, as ***."""
    from urllib.parse import quote, quote_plus

    for value in sorted({v for v in hidden if v}, key=len, reverse=True):
        for form in {value, quote(value, safe=""), quote_plus(value), quote(value, safe=" +")}:
            text = text.replace(form, "***")
    return text


def _under(filename: str, project: Path) -> bool:
    if not Path(filename).is_absolute():  # "<string>", a generated wrapper
        return False
    try:
        Path(filename).resolve().relative_to(project)
    except (ValueError, OSError):
        return False
    return True


def shown_path(filename: str | Path, project: Path) -> str:
    """`filename` relative to the project's directory where it is under it."""
    try:
        return str(Path(filename).resolve().relative_to(project))
    except (ValueError, OSError):
        return str(filename)


# Why a write failed, told apart by errno, in words a user can act on.
REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "the directory is not writable",
    errno.EPERM: "the directory is not writable",
    errno.ENOENT: "the directory is missing",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EPIPE: "nothing reads it any more",
}


def reason(exc: OSError) -> str:
    """Why a write failed, in a few words: 'the disk is full (No space left on device)'."""
    text = exc.strerror or str(exc) or type(exc).__name__
    known = REASONS.get(exc.errno or 0)
    return f"{known} ({text})" if known else text
