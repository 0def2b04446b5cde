"""Local development: the embedded PostgreSQL the tasks use when no database is configured."""

import sys

from invoke import Collection, Context, task

from kubemigrate.tasks.common import ENV_HELP, load, reports_errors


@task(name="db", help={"stop": "Stop the embedded PostgreSQL.", "env": ENV_HELP})
@reports_errors
def database(c: Context, stop: bool = False, env: str | None = None) -> None:
    """Show the embedded PostgreSQL (URL, status), or --stop it."""
    from kubemigrate.postgres.embedded import EmbeddedPostgres

    settings = load(env)
    server = EmbeddedPostgres.for_settings(settings)
    if stop:
        stopped = server.stop()
        print("Stopped." if stopped else "Not running.", file=sys.stderr)
        return
    status = server.status()
    print(f"data directory: {server.data_dir}")
    if not status.running:
        print("status:         stopped (the next db task starts it)")
        return
    print(f"status:         running (pid {status.pid})")
    print(f"url:            {server.url(settings.db_name)}")


ns = Collection("dev", database)
