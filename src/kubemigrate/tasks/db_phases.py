"""The tasks of a release in two phases: the post-deploy migrations (`contract`, the short
name users chain: `inv backup migrate deploy contract verify`), and waiting for the schema
(`db.await`, what a replica's init container does as `python -m kubemigrate await`)."""

from invoke import Context, task

from kubemigrate.tasks.common import ENV_HELP, IN_CLUSTER_HELP, load, reports_errors


@task(
    help={
        "force": "On a protected environment, run migrations that db.lint flags.",
        "in_cluster": IN_CLUSTER_HELP,
        "env": ENV_HELP,
    },
)
@reports_errors
def contract(
    c: Context, force: bool = False, in_cluster: bool = False, env: str | None = None
) -> None:
    """Apply the post-deploy migrations, after the rollout (db.upgrade --post)."""
    from kubemigrate.release import steps

    steps.migrate(load(env), force=force, requested=in_cluster, post=True)


@task(
    name="await",
    help={
        "timeout": "Seconds to wait (default: 600).",
        "env": ENV_HELP,
    },
)
@reports_errors
def await_schema(c: Context, timeout: float = 600.0, env: str | None = None) -> None:
    """Wait until the database has the pre-deploy revisions this code needs (read-only)."""
    from kubemigrate.migrations import phase_runs

    heads = phase_runs.wait(load(env), timeout)
    print(f"The database has what this code needs ({', '.join(heads) or 'base'}).")
