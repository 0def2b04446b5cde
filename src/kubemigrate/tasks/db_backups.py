"""The `db` tasks that keep the data safe: backups, restores, and the checks after a change.

The modules doing the work are imported by the task that runs, not when invoke loads the
collection, so `inv --list` and completion stay fast.
"""

import shlex
import sys
from pathlib import Path

from invoke import Context, task

from kubemigrate.settings.declared import Settings
from kubemigrate.settings.sources import load_settings
from kubemigrate.tasks.common import (
    ENV_HELP,
    confirmation,
    invocation_calls,
    load,
    reports_errors,
)

# -- backups --------------------------------------------------------------------------------------


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
    from kubemigrate.release import steps

    settings = load(env)
    print(steps.backup(settings, output=output, migrating=_migrates_later(settings)))


def _migrates_later(settings: Settings) -> bool:
    """Whether this invocation also runs `db.upgrade` (or `migrate`) on the same environment
    without --force: then a protected environment's gate runs before the backup."""
    return any(
        not call.get("force") and load_settings(call.get("env")).environment == settings.environment
        for call in invocation_calls("kubemigrate.tasks.db.upgrade")
    )


@task(
    help={
        "file": "The .dump file to restore (its .json sidecar must sit beside it).",
        "yes": "Do not ask for confirmation (for pipelines).",
        "force": "Restore a backup of a database with another name, or one that other "
        "accounts could have written.",
        "env": ENV_HELP,
    }
)
@reports_errors
def restore(
    c: Context, file: str, yes: bool = False, force: bool = False, env: str | None = None
) -> None:
    """Restore FILE over the database (after checking its sha256 and asking)."""
    from kubemigrate.release import backups

    revision = backups.restore(load(env), Path(file), confirm=confirmation(yes), force=force)
    print(f"Restored {Path(file).name}; the database is at revision {revision}.")


@task(name="backups", help={"output": "Backup directory to list.", "env": ENV_HELP})
@reports_errors
def list_backups(c: Context, output: str | None = None, env: str | None = None) -> None:
    """List the environment's backups with revision, size and age."""
    from kubemigrate.release import backup_files, backups

    settings = load(env)
    directory = backups.backup_directory(settings, output)
    from kubemigrate import units

    found = backup_files.list_backups(directory)
    if not found:
        print(f"No backups in {directory}.", file=sys.stderr)
        return
    print(f"{'FILE':<60} {'REVISION':<14} {'SIZE':>10} {'AGE':>8}")
    exposed = []
    for record in reversed(found):
        shared = backup_files.shared(record.path(directory))
        if shared:
            exposed.append(record.path(directory))
        print(
            f"{record.file:<60} {record.revision:<14} "
            f"{units.size(record.size):>10} {backup_files.age(record):>8}"
            + (f"  ({shared})" if shared else "")
        )
    if exposed:
        files = " ".join(
            f"{shlex.quote(str(p))} {shlex.quote(str(p.with_suffix('.json')))}" for p in exposed
        )
        print(
            f"{len(exposed)} backup(s) can be read by other accounts on this machine; make them "
            f"yours alone: chmod 600 {files}",
            file=sys.stderr,
        )


# -- checks ---------------------------------------------------------------------------------------


@task(help={"json": "Print the checks as JSON (for pipelines).", "env": ENV_HELP})
@reports_errors
def verify(c: Context, json: bool = False, env: str | None = None) -> None:
    """Check the database is reachable, at the single head, as the models and the ledger say."""
    from kubemigrate.release import steps

    steps.verify(load(env), as_json=json)
