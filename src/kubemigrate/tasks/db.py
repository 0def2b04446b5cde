"""The database of the chosen environment: migrations, backups, restores and checks."""

from invoke import Collection, Context, task

from kubemigrate import migrations
from kubemigrate.release import journal
from kubemigrate.tasks.common import ENV_HELP, load, reports_errors

SQL_HELP = "Print the SQL to standard output instead of running it (needs no database)."


@task(
    aliases=["migrate"],
    help={"revision": "Revision to upgrade to (default: head).", "sql": SQL_HELP, "env": ENV_HELP},
)
@reports_errors
def upgrade(c: Context, revision: str = "head", sql: bool = False, env: str | None = None) -> None:
    """Upgrade the database to head (or to --revision)."""
    migrations.upgrade(load(env), revision, sql=sql)
    if not sql:
        journal.record("upgrade")


@task(
    help={
        "revision": "-1 (one step back), a revision id, or base; with --sql a FROM:TO range.",
        "sql": SQL_HELP,
        "env": ENV_HELP,
    }
)
@reports_errors
def downgrade(c: Context, revision: str, sql: bool = False, env: str | None = None) -> None:
    """Downgrade the database to REVISION."""
    migrations.downgrade(load(env), revision, sql=sql)


@task(help={"verbose": "Show each revision in full.", "env": ENV_HELP})
@reports_errors
def current(c: Context, verbose: bool = False, env: str | None = None) -> None:
    """Show the database's current revision."""
    migrations.current(load(env), verbose=verbose)


@task(help={"verbose": "Show each revision in full.", "env": ENV_HELP})
@reports_errors
def history(c: Context, verbose: bool = False, env: str | None = None) -> None:
    """List the migrations, newest first."""
    migrations.history(load(env), verbose=verbose)


@task(help={"verbose": "Show each head in full.", "env": ENV_HELP})
@reports_errors
def heads(c: Context, verbose: bool = False, env: str | None = None) -> None:
    """Show the head revisions of the migrations."""
    migrations.heads(load(env), verbose=verbose)


@task(help={"revision": "Revision id (or head, base).", "env": ENV_HELP})
@reports_errors
def show(c: Context, revision: str, env: str | None = None) -> None:
    """Show one revision."""
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
    for path in migrations.revision(load(env), message, autogenerate=not no_autogenerate):
        print(f"Review {path} before running `inv db.upgrade`.")


@task(
    iterable=["revision"],
    help={
        "revision": "A head to merge (repeat the flag); default: all heads.",
        "message": "Message of the merge revision.",
        "env": ENV_HELP,
    },
)
@reports_errors
def merge(
    c: Context, revision: list[str], message: str | None = None, env: str | None = None
) -> None:
    """Write a merge revision joining divergent heads."""
    for path in migrations.merge(load(env), revision, message):
        print(f"Wrote {path}.")


@task(help={"revision": "Revision to record.", "sql": SQL_HELP, "env": ENV_HELP})
@reports_errors
def stamp(c: Context, revision: str, sql: bool = False, env: str | None = None) -> None:
    """Record REVISION as current without running migrations."""
    migrations.stamp(load(env), revision, sql=sql)


@task(help={"env": ENV_HELP})
@reports_errors
def check(c: Context, env: str | None = None) -> None:
    """Fail, listing differences, when models and migrations disagree."""
    migrations.check(load(env))
    print("The models and the migrations agree.")


ns = Collection(
    "db",
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
)
