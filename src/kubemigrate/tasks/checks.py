"""Verification: is the database of an environment what a release expects?"""

import json as jsonlib

from invoke import Context, Exit, task

from kubemigrate import verify as checks
from kubemigrate.tasks.common import ENV_HELP, load, reports_errors


@task(help={"json": "Print the checks as JSON (for pipelines).", "env": ENV_HELP})
@reports_errors
def verify(c: Context, json: bool = False, env: str | None = None) -> None:
    """Check the database: reachable, single head, at head, models match (exit 1 on a FAIL)."""
    results = checks.verify(load(env))
    ok = checks.passed(results)
    if json:
        print(jsonlib.dumps({"passed": ok, "checks": [r.as_dict() for r in results]}, indent=2))
    else:
        print(checks.table(results))
    if not ok:
        failed = ", ".join(r.name for r in results if r.result == checks.FAIL)
        raise Exit(f"error: verification failed: {failed}", code=1)
