"""The `db` tasks for the ledger of applied migrations (`kubemigrate_history`): checking the
revision files against it, and accepting a file that changed on purpose."""

import json
import sys

from invoke import Context, task

from kubemigrate.errors import MigrationError
from kubemigrate.tasks.common import ENV_HELP, confirm_if_protected, load, reports_errors

FORMAT_HELP = "text (default) or json (a versioned shape, for CI)."


@task(help={"format": FORMAT_HELP, "env": ENV_HELP})
@reports_errors
def validate(c: Context, format: str = "text", env: str | None = None) -> None:
    """Check each applied revision's file against the ledger: edited, missing or unknown."""
    from kubemigrate.migrations import commands, ledger_check

    if format not in ("text", "json"):
        raise MigrationError(f"unknown --format {format!r}; use text or json")
    settings = load(env)
    result = ledger_check.validate(settings, commands.graph(settings))
    if format == "json":
        print(json.dumps(result.as_dict(settings), indent=2))
    else:
        for problem in result.problems:
            print(problem.line(settings))
        print(result.summary()[0].upper() + result.summary()[1:] + ".", file=sys.stderr)
    if not result.ok:
        raise MigrationError(f"{result.summary()}; each is listed above with what to do")


@task(
    help={
        "revision": "The revision whose file to accept as it is now (as db.validate names it).",
        "reason": "Why it changed (required; recorded in the ledger with who did it).",
        "yes": "Do not ask for confirmation on a protected environment (for pipelines).",
        "env": ENV_HELP,
    }
)
@reports_errors
def repair(
    c: Context, revision: str, reason: str = "", yes: bool = False, env: str | None = None
) -> None:
    """Accept REVISION's file as it is now: the ledger records who and why."""
    from kubemigrate.migrations import commands, ledger_check

    settings = load(env)
    if not reason.strip():
        raise MigrationError('a repair needs a reason: --reason "why the file changed"')
    confirm_if_protected(
        settings, f"Accept the file of {revision} as applied on {settings.environment}?", yes
    )
    problem = ledger_check.repair(settings, commands.graph(settings), revision, reason)
    what = "its absence" if problem.kind == "missing" else "its file as it is now"
    print(f"Repaired {problem.revision} ({problem.kind}): the ledger accepts {what}.")


TASKS = (validate, repair)
