"""Backups: pg_dump to a checked file with a sidecar, restore it, list what is kept.

`kubemigrate.backup` (and the database and kubectl modules it brings) is imported by the tasks
that run, not when invoke loads the collection: `inv --list` and completion stay fast.
"""

import sys
from pathlib import Path

from invoke import Context, task

from kubemigrate.journal import journal
from kubemigrate.tasks.common import ENV_HELP, confirmation, load, reports_errors


@task(
    help={
        "output": "Directory for the backup (default: KUBEMIGRATE_BACKUP_DIR, i.e. backups/); "
        "files go to <dir>/<environment>/.",
        "env": ENV_HELP,
    }
)
@reports_errors
def backup(c: Context, output: str | None = None, env: str | None = None) -> None:
    """Back up the database with pg_dump (checked; a .json sidecar beside it)."""
    from kubemigrate import backup as backups

    settings = load(env)
    record = backups.backup(settings, output=output)
    path = backups.backup_directory(settings, output) / record.file
    journal.record("backup", backup=path, environment=settings.environment)
    print(path)


@task(
    help={
        "file": "The .dump file to restore (its .json sidecar must sit beside it).",
        "yes": "Do not ask for confirmation (for pipelines).",
        "force": "Restore a backup of a database with another name.",
        "env": ENV_HELP,
    }
)
@reports_errors
def restore(
    c: Context, file: str, yes: bool = False, force: bool = False, env: str | None = None
) -> None:
    """Restore FILE over the database (after checking its sha256 and asking)."""
    from kubemigrate import backup as backups

    revision = backups.restore(load(env), Path(file), confirm=confirmation(yes), force=force)
    print(f"Restored {Path(file).name}; the database is at revision {revision}.")


@task(name="backups", help={"output": "Backup directory to list.", "env": ENV_HELP})
@reports_errors
def list_backups(c: Context, output: str | None = None, env: str | None = None) -> None:
    """List the environment's backups with revision, size and age."""
    from kubemigrate import backup as backups

    settings = load(env)
    directory = backups.backup_directory(settings, output)
    found = backups.list_backups(directory)
    if not found:
        print(f"No backups in {directory}.", file=sys.stderr)
        return
    print(f"{'FILE':<60} {'REVISION':<14} {'SIZE':>10} {'AGE':>8}")
    for record in reversed(found):
        print(
            f"{record.file:<60} {record.revision:<14} "
            f"{backups.size_text(record.size):>10} {backups.age(record):>8}"
        )
