"""The database of the chosen environment: migrations, backups, restores and checks.

The modules doing the work are imported by the task that runs, not when invoke loads the
collection, so `inv --list` and completion stay fast.
"""

import sys
from pathlib import Path

from invoke import Collection, Context, task

from kubemigrate.errors import MigrationError
from kubemigrate.settings import Settings, load_settings
from kubemigrate.tasks.common import (
    ENV_HELP,
    confirm_if_protected,
    confirmation,
    invocation_calls,
    load,
    reports_errors,
)

SQL_HELP = "Print the SQL to standard output instead of running it (needs no database)."
YES_HELP = "Do not ask for confirmation on a protected environment (for pipelines)."


# -- migrations -----------------------------------------------------------------------------------


IN_CLUSTER_HELP = (
    "Run it in the cluster, as a Kubernetes Job from the release's image (as "
    "KUBEMIGRATE_RUNNER=job does)."
)


@task(
    aliases=["migrate"],
    help={
        "revision": "Revision to upgrade to (default: head).",
        "sql": SQL_HELP,
        "force": "On a protected environment, run migrations that db.lint flags.",
        "in_cluster": IN_CLUSTER_HELP,
        "env": ENV_HELP,
    },
)
@reports_errors
def upgrade(
    c: Context,
    revision: str = "head",
    sql: bool = False,
    force: bool = False,
    in_cluster: bool = False,
    env: str | None = None,
) -> None:
    """Upgrade the database to head (or to --revision)."""
    from kubemigrate import migrations, steps

    settings = load(env)
    if sql:
        migrations.upgrade(settings, revision, sql=True)
    else:
        steps.migrate(settings, revision, force=force, requested=in_cluster)


@task(
    help={
        "revision": "-1 (one step back), a revision id, or base; with --sql a FROM:TO range.",
        "sql": SQL_HELP,
        "yes": YES_HELP,
        "in_cluster": IN_CLUSTER_HELP,
        "env": ENV_HELP,
    }
)
@reports_errors
def downgrade(
    c: Context,
    revision: str,
    sql: bool = False,
    yes: bool = False,
    in_cluster: bool = False,
    env: str | None = None,
) -> None:
    """Downgrade the database to REVISION."""
    from kubemigrate import steps

    settings = load(env)
    if not sql:
        confirm_if_protected(settings, f"Downgrade {settings.environment} to {revision}?", yes)
    steps.change(settings, "downgrade", revision, requested=in_cluster, sql=sql)


@task(help={"verbose": "Show each revision in full.", "env": ENV_HELP})
@reports_errors
def current(c: Context, verbose: bool = False, env: str | None = None) -> None:
    """Show the database's current revision."""
    from kubemigrate import migrations

    migrations.current(load(env), verbose=verbose)


@task(help={"verbose": "Show each revision in full.", "env": ENV_HELP})
@reports_errors
def history(c: Context, verbose: bool = False, env: str | None = None) -> None:
    """List the migrations, newest first."""
    from kubemigrate import migrations

    migrations.history(load(env), verbose=verbose)


@task(help={"verbose": "Show each head in full.", "env": ENV_HELP})
@reports_errors
def heads(c: Context, verbose: bool = False, env: str | None = None) -> None:
    """Show the head revisions of the migrations."""
    from kubemigrate import migrations

    migrations.heads(load(env), verbose=verbose)


@task(help={"revision": "Revision id (or head, base).", "env": ENV_HELP})
@reports_errors
def show(c: Context, revision: str, env: str | None = None) -> None:
    """Show one revision."""
    from kubemigrate import migrations

    migrations.show(load(env), revision)


@task(
    help={
        "message": "What the migration does, e.g. 'add user.is_active'.",
        "no_autogenerate": "Write an empty migration instead of comparing models and database.",
        "env": ENV_HELP,
    }
)
@reports_errors
def revision(
    c: Context, message: str, no_autogenerate: bool = False, env: str | None = None
) -> None:
    """Write a migration from the model changes (database at head)."""
    from kubemigrate import migrations

    for path in migrations.revision(load(env), message, autogenerate=not no_autogenerate):
        print(f"Review {path} before running `inv db.upgrade`.")


@task(
    iterable=["revision"],
    help={
        "revision": "A head to merge (repeat the flag); default: all heads.",
        "message": "Message of the merge revision.",
        "yes": YES_HELP,
        "env": ENV_HELP,
    },
)
@reports_errors
def merge(
    c: Context,
    revision: list[str],
    message: str | None = None,
    yes: bool = False,
    env: str | None = None,
) -> None:
    """Write a merge revision joining divergent heads."""
    from kubemigrate import migrations

    settings = load(env)
    confirm_if_protected(settings, f"Merge the heads for {settings.environment}?", yes)
    for path in migrations.merge(settings, revision, message):
        print(f"Wrote {path}.")


@task(
    help={
        "revision": "Revision to record.",
        "sql": SQL_HELP,
        "yes": YES_HELP,
        "in_cluster": IN_CLUSTER_HELP,
        "env": ENV_HELP,
    }
)
@reports_errors
def stamp(
    c: Context,
    revision: str,
    sql: bool = False,
    yes: bool = False,
    in_cluster: bool = False,
    env: str | None = None,
) -> None:
    """Record REVISION as current without running migrations."""
    from kubemigrate import steps

    settings = load(env)
    if not sql:
        confirm_if_protected(settings, f"Stamp {settings.environment} as {revision}?", yes)
    steps.change(settings, "stamp", revision, requested=in_cluster, sql=sql)


@task(help={"env": ENV_HELP})
@reports_errors
def check(c: Context, env: str | None = None) -> None:
    """Fail, listing differences, when models and migrations disagree."""
    from kubemigrate import migrations

    migrations.check(load(env))
    print("The models and the migrations agree.")


@task(
    help={
        "from_base": "Lint every migration, not only those the database has yet to run.",
        "env": ENV_HELP,
    }
)
@reports_errors
def lint(c: Context, from_base: bool = False, env: str | None = None) -> None:
    """Lint the SQL of pending migrations with squawk; fail on unsafe operations."""
    from kubemigrate import linter, migrations

    settings = load(env)
    start = None if from_base else migrations.database_revision(settings)
    from kubemigrate.target import server_major

    findings = linter.lint(settings, start, 0 if from_base else server_major(settings))
    for finding in findings:
        print(finding)
    if findings:
        raise MigrationError(f"{len(findings)} unsafe operation(s) in the migrations (above)")
    print("No unsafe operations found.")


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
    from kubemigrate import steps

    settings = load(env)
    print(steps.backup(settings, output=output, migrating=_migrates_later(settings)))


def _migrates_later(settings: Settings) -> bool:
    """Whether this invocation also runs `db.upgrade` (or `migrate`) on the same environment
    without --force: then a protected environment's gate runs before the backup."""
    return any(
        not call.get("force") and load_settings(call.get("env")).environment == settings.environment
        for call in invocation_calls(upgrade)
    )


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
    from kubemigrate import backups

    revision = backups.restore(load(env), Path(file), confirm=confirmation(yes), force=force)
    print(f"Restored {Path(file).name}; the database is at revision {revision}.")


@task(name="backups", help={"output": "Backup directory to list.", "env": ENV_HELP})
@reports_errors
def list_backups(c: Context, output: str | None = None, env: str | None = None) -> None:
    """List the environment's backups with revision, size and age."""
    from kubemigrate import backups

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


# -- a new project --------------------------------------------------------------------------------


@task(
    help={
        "models": "Module or package holding the SQLModel tables (default: app.models).",
        "directory": "Migrations directory to create (default: migrations).",
    }
)
@reports_errors
def init(c: Context, models: str = "app.models", directory: str = "migrations") -> None:
    """Start migrations in a project that has none: alembic.ini, env.py, script.py.mako."""
    from kubemigrate import scaffold
    from kubemigrate.settings import find_project_dir

    project = find_project_dir()
    for path in scaffold.init(project, models=models, directory=directory):
        print(f"wrote {path.relative_to(project)}", file=sys.stderr)
    print('next: inv db.revision "first tables" && inv db.upgrade', file=sys.stderr)


# -- the plan ------------------------------------------------------------------------------------


@task(
    help={
        "since": "Plan the revisions after REV (what a branch adds); default: the database's.",
        "base": "Plan the revisions the working tree adds to GITREF's (a pull request's own), "
        "checked on the merged tree: one head, descending from GITREF's.",
        "rehearse": "Run them on a throwaway embedded copy of the schema and measure the locks "
        "and table rewrites (the target is only read).",
        "format": "text (default), markdown (a pull-request comment) or json (versioned shape).",
        "fail_on": "Exit 1 on findings of this severity or worse: error (default), warning, never.",
        "env": ENV_HELP,
    }
)
@reports_errors
def plan(
    c: Context,
    since: str | None = None,
    base: str | None = None,
    rehearse: bool = False,
    format: str = "text",
    fail_on: str = "error",
    env: str | None = None,
) -> None:
    """Report what the pending migrations will do: SQL, locks, table sizes, risks, undo."""
    from kubemigrate import plan as planning

    shows = {"text": planning.as_text, "markdown": planning.as_markdown, "json": planning.as_json}
    if format not in shows:
        raise MigrationError(f"unknown --format {format!r}; use text, markdown or json")
    if fail_on not in ("error", "warning", "never"):
        raise MigrationError(f"unknown --fail-on {fail_on!r}; use error, warning or never")
    result = planning.plan(load(env), since=since, base=base, rehearse=rehearse)
    print(shows[format](result), end="" if format == "markdown" else "\n")
    if result.fails(fail_on):
        raise MigrationError(
            f"the plan has findings of severity {result.worst()} (--fail-on {fail_on})"
        )


# -- migration Jobs -------------------------------------------------------------------------------


@task(name="jobs", help={"env": ENV_HELP})
@reports_errors
def list_jobs(c: Context, env: str | None = None) -> None:
    """List kubemigrate's migration Jobs with state, revision and age."""
    from kubemigrate import jobs
    from kubemigrate.kube import Kubectl

    kubectl = Kubectl.from_settings(load(env))
    rows = [("NAME", "STATE", "REVISION", "AGE"), *map(jobs.describe, jobs.listed(kubectl))]
    if len(rows) == 1:
        print(f"No migration Jobs in {kubectl.where}.", file=sys.stderr)
        return
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    for name, state, rev, age in rows:
        print(f"{name:<{width[0]}}  {state:<{width[1]}}  {rev:<{width[2]}}  {age}")


@task(
    help={
        "name": "The Job, as `inv db.jobs` lists it.",
        "follow": "Stream its log and wait for its end, as the migration task does.",
        "cancel": "Delete it: PostgreSQL rolls the migration in progress back.",
        "env": ENV_HELP,
    }
)
@reports_errors
def job(
    c: Context, name: str, follow: bool = False, cancel: bool = False, env: str | None = None
) -> None:
    """Follow (--follow) or cancel (--cancel) a migration Job."""
    from kubemigrate import jobs
    from kubemigrate.kube import Kubectl

    settings = load(env)
    kubectl = Kubectl.from_settings(settings)
    run_id = jobs.run_id_of(kubectl, name)
    if cancel:
        stopped = jobs.cancel(kubectl, name, run_id)
        state = "its pod has stopped" if stopped else "its pod is still stopping"
        rolled = "PostgreSQL rolls back what it had not committed"
        print(f"Deleted the migration Job {name} ({state}); {rolled}.")
    elif follow:
        jobs.follow(settings, kubectl, name, run_id)
    else:
        print(jobs.describe(kubectl.get("job", name))[1])


@task(
    name="job-manifest",
    help={
        "revision": "Revision to upgrade to (default: head).",
        "env": ENV_HELP,
    },
)
@reports_errors
def job_manifest(c: Context, revision: str = "head", env: str | None = None) -> None:
    """Print the migration Job's YAML (for Helm or Argo CD hooks); needs no cluster."""
    from kubemigrate import jobs

    settings = load(env)
    print(jobs.to_yaml(jobs.manifest(settings, ["upgrade", "--", revision], revision=revision)))


# -- checks ---------------------------------------------------------------------------------------


@task(help={"json": "Print the checks as JSON (for pipelines).", "env": ENV_HELP})
@reports_errors
def verify(c: Context, json: bool = False, env: str | None = None) -> None:
    """Check the database is reachable, at the single head, and matches the models."""
    from kubemigrate import steps

    steps.verify(load(env), as_json=json)


ns = Collection(
    "db",
    init,
    upgrade,
    downgrade,
    current,
    history,
    heads,
    show,
    revision,
    merge,
    stamp,
    check,
    lint,
    plan,
    backup,
    restore,
    list_backups,
    verify,
    list_jobs,
    job,
    job_manifest,
)
