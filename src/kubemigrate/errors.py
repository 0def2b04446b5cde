"""Errors a user can act on, all in one place.

Every expected failure is a `KubemigrateError` whose message is one line saying what failed and
what to do. The task layer turns it into invoke's `Exit`, so the user sees that line and a
non-zero exit, never a traceback. Messages never contain a password: build them from masked
URLs and names, not from raw connection strings.

The subclasses say which part failed, for callers that handle one kind differently:

- `SettingsError`: a setting is unknown, malformed or missing;
- `DatabaseError`: PostgreSQL (the embedded server included) cannot be reached or refused;
- `MigrationError`: Alembic refused a command, or the migrations are not fit to run;
- `ClusterError`: kubectl could not do what was asked (tunnel, lookups, apply, rollout);
  `NotFoundError` when the API server answered NotFound;
- `BackupError`: a backup or restore could not be made or trusted.
"""


class KubemigrateError(Exception):
    """A failure with a message meant for the user."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

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
