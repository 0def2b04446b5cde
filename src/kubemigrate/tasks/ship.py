"""Shipping: apply the application's manifests, and the whole release in one task.

The modules doing the work are imported by the task that runs (see tasks/backups.py)."""

from invoke import Collection, Context, task

from kubemigrate.journal import journal
from kubemigrate.tasks.common import ENV_HELP, load, reports_errors

SKIP_HELP = "Deploy even when the database is not at head."


@task(help={"skip_db_check": SKIP_HELP, "env": ENV_HELP})
@reports_errors
def deploy(c: Context, skip_db_check: bool = False, env: str | None = None) -> None:
    """Apply the manifests (kubectl apply -k) and wait for the rollouts."""
    from kubemigrate import release as releases

    releases.deploy(load(env), skip_db_check=skip_db_check)
    journal.record("deploy")


@task(
    help={"dry_run": "Print the plan (steps, commands, SQL) and change nothing.", "env": ENV_HELP}
)
@reports_errors
def release(c: Context, dry_run: bool = False, env: str | None = None) -> None:
    """Backup, upgrade, verify and deploy, stopping at the first failure."""
    from kubemigrate import migrations
    from kubemigrate import release as releases
    from kubemigrate import verify as checks
    from kubemigrate.backup import backup, backup_directory

    settings = load(env)
    if dry_run:
        print(releases.plan(settings))
        return
    record = backup(settings)
    path = backup_directory(settings) / record.file
    journal.record("backup", backup=path, environment=settings.environment)
    migrations.upgrade(settings)
    journal.record("upgrade")
    results = checks.verify(settings)
    print(checks.table(results))
    checks.require_passed(results)
    journal.record("verify")
    releases.deploy(settings)
    journal.record("deploy")
    print(f"Released {settings.environment}: backup {path.name}, database at head, deployed.")


ns = Collection(deploy, release)
