"""Shipping: apply the application's manifests, and the whole release in one task.

Both run the release's step functions (`kubemigrate.release.steps`), the same ones the chained forms
`inv db.backup db.upgrade db.verify deploy` and `inv backup migrate verify deploy` run.
"""

from invoke import Collection, Context, task

from kubemigrate.tasks.common import ENV_HELP, load, reports_errors

SKIP_HELP = "Deploy even when the database is not at head."


@task(help={"skip_db_check": SKIP_HELP, "env": ENV_HELP})
@reports_errors
def deploy(c: Context, skip_db_check: bool = False, env: str | None = None) -> None:
    """Apply the manifests (kubectl apply -k) and wait for the rollouts."""
    from kubemigrate.release import steps

    steps.deploy(load(env), skip_db_check=skip_db_check)


@task(
    help={"dry_run": "Print the plan (steps, commands, SQL) and change nothing.", "env": ENV_HELP}
)
@reports_errors
def release(c: Context, dry_run: bool = False, env: str | None = None) -> None:
    """Backup, upgrade, verify and deploy, stopping at the first failure."""
    from kubemigrate.release import steps

    settings = load(env)
    if dry_run:
        print(steps.dry_run(settings))
        return
    path = steps.release(settings)
    print(f"Released {settings.environment}: backup {path.name}, database at head, deployed.")


ns = Collection(deploy, release)
