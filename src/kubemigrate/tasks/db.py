"""The database of the chosen environment: migrations, backups, restores and checks."""

import sys

from invoke import Collection, Context, task

from kubemigrate import lint as linting
from kubemigrate import migrations
from kubemigrate.errors import MigrationError
from kubemigrate.journal import journal
from kubemigrate.settings import Settings
from kubemigrate.tasks.common import ENV_HELP, confirm_if_protected, load, reports_errors

SQL_HELP = "Print the SQL to standard output instead of running it (needs no database)."
YES_HELP = "Do not ask for confirmation on a protected environment (for pipelines)."


@task(
    aliases=["migrate"],
    help={
        "revision": "Revision to upgrade to (default: head).",
        "sql": SQL_HELP,
        "force": "On a protected environment, run migrations that db.lint flags.",
        "env": ENV_HELP,
    },
)
@reports_errors
def upgrade(
    c: Context,
    revision: str = "head",
    sql: bool = False,
    force: bool = False,
    env: str | None = None,
) -> None:
    """Upgrade the database to head (or to --revision)."""
    settings = load(env)
    if settings.protected and not sql and not force:
        require_lint_clean(settings)
    migrations.upgrade(settings, revision, sql=sql)
    if not sql:
        journal.record("upgrade")


@task(
    help={
        "revision": "-1 (one step back), a revision id, or base; with --sql a FROM:TO range.",
        "sql": SQL_HELP,
        "yes": YES_HELP,
        "env": ENV_HELP,
    }
)
@reports_errors
def downgrade(
    c: Context, revision: str, sql: bool = False, yes: bool = False, env: str | None = None
) -> None:
    """Downgrade the database to REVISION."""
    settings = load(env)
    if not sql:
        confirm_if_protected(settings, f"Downgrade {settings.environment} to {revision}?", yes)
    migrations.downgrade(settings, revision, sql=sql)


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
    settings = load(env)
    confirm_if_protected(settings, f"Merge the heads for {settings.environment}?", yes)
    for path in migrations.merge(settings, revision, message):
        print(f"Wrote {path}.")


@task(help={"revision": "Revision to record.", "sql": SQL_HELP, "yes": YES_HELP, "env": ENV_HELP})
@reports_errors
def stamp(
    c: Context, revision: str, sql: bool = False, yes: bool = False, env: str | None = None
) -> None:
    """Record REVISION as current without running migrations."""
    settings = load(env)
    if not sql:
        confirm_if_protected(settings, f"Stamp {settings.environment} as {revision}?", yes)
    migrations.stamp(settings, revision, sql=sql)


@task(help={"env": ENV_HELP})
@reports_errors
def check(c: Context, env: str | None = None) -> None:
    """Fail, listing differences, when models and migrations disagree."""
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
    settings = load(env)
    start = None if from_base else migrations.database_revision(settings)
    findings = linting.lint(settings, start)
    for finding in findings:
        print(finding)
    if findings:
        raise MigrationError(f"{len(findings)} unsafe operation(s) in the migrations (above)")
    print("No unsafe operations found.")


def require_lint_clean(settings: Settings) -> None:
    """On protected environments: stop before migrations squawk flags."""
    findings = linting.lint(settings, migrations.database_revision(settings))
    for finding in findings:
        print(f"lint: {finding}", file=sys.stderr)
    if findings:
        raise MigrationError(
            f"{settings.environment} is protected and {len(findings)} pending operation(s) "
            "are unsafe (listed above); fix the migrations or pass --force"
        )


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
    lint,
)
