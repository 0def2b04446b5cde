"""Errors a user can act on.

Every expected failure is a `KubemigrateError` whose message is one line saying what failed and
what to do. The task layer turns it into invoke's `Exit`, so the user sees that line and a
non-zero exit, never a traceback. Messages never contain a password: build them from masked
URLs and names, not from raw connection strings.
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


class EmbeddedDatabaseError(KubemigrateError):
    """The embedded PostgreSQL could not be started or stopped."""
