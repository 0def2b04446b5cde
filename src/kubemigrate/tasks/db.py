"""The `db` tasks for the migrations: Alembic's commands, a new project, and the review of
what is pending (the plan and the lint).

The modules doing the work are imported by the task that runs, not when invoke loads the
collection, so `inv --list` and completion stay fast.
"""

import sys

from invoke import Context, task

from kubemigrate.errors import MigrationError
from kubemigrate.tasks.common import (
    ENV_HELP,
    IN_CLUSTER_HELP,
    confirm_if_protected,
    load,
    reports_errors,
)

SQL_HELP = "Print the SQL to standard output instead of running it (needs no database)."
YES_HELP = "Do not ask for confirmation on a protected environment (for pipelines)."


# -- migrations -----------------------------------------------------------------------------------


POST_HELP = (
    'Apply the post-deploy revisions (phase = "post") pending after the pre-deploy ones: '
    "run it once the rollout is done."
)


@task(
    aliases=["migrate"],
    help={
        "revision": "Revision to upgrade to (default: head; with phases, the last revision "
        "before the first pending post-deploy one).",
        "post": POST_HELP,
        "sql": SQL_HELP,
        "force": "On a protected environment, run migrations that db.lint flags.",
        "in_cluster": IN_CLUSTER_HELP,
        "env": ENV_HELP,
    },
)
@reports_errors
def upgrade(
    c: Context,
    revision: str | None = None,
    post: bool = False,
    sql: bool = False,
    force: bool = False,
    in_cluster: bool = False,
    env: str | None = None,
) -> None:
    """Upgrade the database to head (or to --revision; with phases, before the rollout)."""
    from kubemigrate.migrations import commands
    from kubemigrate.release import steps

    settings = load(env)
    if post and revision is not None:
        raise MigrationError("--post applies the post-deploy revisions: leave out --revision")
    if sql:
        commands.upgrade(settings, revision or "head", sql=True)
    else:
        steps.migrate(settings, revision, force=force, requested=in_cluster, post=post)


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
    from kubemigrate.release import steps

    settings = load(env)
    if not sql:
        confirm_if_protected(settings, f"Downgrade {settings.environment} to {revision}?", yes)
    steps.change(settings, "downgrade", revision, requested=in_cluster, sql=sql)


@task(
    help={
        "verbose": "Show the revision in full, and when and by whom it was applied (the ledger).",
        "env": ENV_HELP,
    }
)
@reports_errors
def current(c: Context, verbose: bool = False, env: str | None = None) -> None:
    """Show the database's current revision."""
    from kubemigrate.migrations import commands, ledger_views

    settings = load(env)
    commands.current(settings, verbose=verbose)
    if verbose:
        for line in ledger_views.current_lines(settings):
            print(line)


@task(
    help={
        "verbose": "Show each revision in full.",
        "applied": "Show the ledger instead: what was applied, when, by whom, how long.",
        "format": "With --applied: text (default) or json.",
        "env": ENV_HELP,
    }
)
@reports_errors
def history(
    c: Context,
    verbose: bool = False,
    applied: bool = False,
    format: str = "text",
    env: str | None = None,
) -> None:
    """List the migrations, newest first (--applied: the ledger of what ran)."""
    from kubemigrate.migrations import commands, ledger_views

    settings = load(env)
    if not applied:
        if format != "text":
            raise MigrationError("--format json lists the ledger: add --applied")
        commands.history(settings, verbose=verbose)
        return
    shows = {"text": ledger_views.as_table, "json": ledger_views.as_json}
    if format not in shows:
        raise MigrationError(f"unknown --format {format!r}; use text or json")
    print(shows[format](ledger_views.rows(settings), commands.graph(settings)))


@task(help={"verbose": "Show each head in full.", "env": ENV_HELP})
@reports_errors
def heads(c: Context, verbose: bool = False, env: str | None = None) -> None:
    """Show the head revisions of the migrations."""
    from kubemigrate.migrations import commands

    commands.heads(load(env), verbose=verbose)


@task(help={"revision": "Revision id (or head, base).", "env": ENV_HELP})
@reports_errors
def show(c: Context, revision: str, env: str | None = None) -> None:
    """Show one revision."""
    from kubemigrate.migrations import commands

    commands.show(load(env), revision)


@task(
    help={
        "message": "What the migration does, e.g. 'add user.is_active'.",
        "no_autogenerate": "Write an empty migration instead of comparing models and database.",
        "post": 'Mark it post-deploy (phase = "post"): in a release with phases it runs after '
        "the rollout.",
        "env": ENV_HELP,
    }
)
@reports_errors
def revision(
    c: Context,
    message: str,
    no_autogenerate: bool = False,
    post: bool = False,
    env: str | None = None,
) -> None:
    """Write a migration from the model changes (database at head)."""
    from kubemigrate.migrations import commands

    written = commands.revision(load(env), message, autogenerate=not no_autogenerate, post=post)
    for path in written:
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
    from kubemigrate.migrations import commands

    settings = load(env)
    confirm_if_protected(settings, f"Merge the heads for {settings.environment}?", yes)
    for path in commands.merge(settings, revision, message):
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
    from kubemigrate.release import steps

    settings = load(env)
    if not sql:
        confirm_if_protected(settings, f"Stamp {settings.environment} as {revision}?", yes)
    steps.change(settings, "stamp", revision, requested=in_cluster, sql=sql)


@task(help={"env": ENV_HELP})
@reports_errors
def check(c: Context, env: str | None = None) -> None:
    """Fail, listing differences, when models and migrations disagree."""
    from kubemigrate.migrations import commands

    commands.check(load(env))
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
    from kubemigrate.review import build, render, squawk

    result = build.plan(load(env), since="base" if from_base else None)
    unsafe = squawk.squawk_findings(result)
    for revision, finding in unsafe:
        print(render.lint_line(revision, finding))
    if unsafe:
        raise MigrationError(f"{len(unsafe)} unsafe operation(s) in the migrations (above)")
    print("No unsafe operations found.")


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
    from kubemigrate.migrations import scaffold
    from kubemigrate.settings.sources import find_project_dir

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
    from kubemigrate.review import build, measures, render

    shows = {"text": render.as_text, "markdown": render.as_markdown, "json": render.as_json}
    if format not in shows:
        raise MigrationError(f"unknown --format {format!r}; use text, markdown or json")
    if fail_on not in ("error", "warning", "never"):
        raise MigrationError(f"unknown --fail-on {fail_on!r}; use error, warning or never")
    measure = measures.measure if rehearse else None
    result = build.plan(load(env), since=since, base=base, rehearse=measure)
    print(shows[format](result), end="" if format == "markdown" else "\n")
    if result.fails(fail_on):
        raise MigrationError(
            f"the plan has findings of severity {result.worst()} (--fail-on {fail_on})"
        )


# The tasks of this module, in the order `inv --list` shows them under `db`.
TASKS = (
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
)
TASKS_REVIEW = (lint, plan)
