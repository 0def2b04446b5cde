"""Verification: is the database of an environment what a release expects?"""

import json as jsonlib

from invoke import Context, task

from kubemigrate import verify as checks
from kubemigrate.journal import journal
from kubemigrate.tasks.common import ENV_HELP, load, reports_errors


@task(help={"json": "Print the checks as JSON (for pipelines).", "env": ENV_HELP})
@reports_errors
def verify(c: Context, json: bool = False, env: str | None = None) -> None:
    """Check the database is reachable, at the single head, and matches the models."""
    results = checks.verify(load(env))
    if json:
        print(
            jsonlib.dumps(
                {"passed": checks.passed(results), "checks": [r.as_dict() for r in results]},
                indent=2,
            )
        )
    else:
        print(checks.table(results))
    checks.require_passed(results)
    journal.record("verify")
