"""Who runs a migration, where, and from which commit: the facts each row of the ledger
(`kubemigrate.migrations.ledger`) carries besides the step itself.

`collect` reads them once, when the first row is written, so a run that applies nothing pays
nothing: the OS user and the CI's actor (or, outside CI, the git user), the host, the git
commit of the working tree, kubemigrate's version. A migration Job runs far from the checkout
and the person who asked for it: the task that starts it passes its own facts in
`KUBEMIGRATE_LEDGER_FACTS` (JSON), and the Job records them, with the pod's host name.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from kubemigrate.settings.sources import PASSED

FACTS_VARIABLE = PASSED[0]
# The CI's actor, by system: GitHub Actions, GitLab CI, Azure Pipelines, CircleCI, Buildkite.
CI_ACTORS = (
    "GITHUB_ACTOR",
    "GITLAB_USER_LOGIN",
    "BUILD_REQUESTEDFOR",
    "CIRCLE_USERNAME",
    "BUILDKITE_BUILD_CREATOR",
)
# One id per invocation: the rows a release writes share it.
RUN_ID = uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Facts:
    """What a ledger row says of its run."""

    who: str
    host: str
    environment: str
    version: str
    commit: str | None
    run_id: str

    def as_json(self) -> str:
        return json.dumps(asdict(self))


def collect(environment: str, directory: Path | None = None, run_id: str = RUN_ID) -> Facts:
    """The facts of this run in `environment`; `directory` is in the project's checkout (for
    its git commit and user); `run_id`, the invocation's. A Job takes its task's
    (`FACTS_VARIABLE`), with its own host."""
    version = _version()
    given = os.environ.get(FACTS_VARIABLE)
    if given:
        try:
            passed = Facts(**json.loads(given))
        except (TypeError, ValueError):
            pass  # a hand-written or foreign value: this run's own facts instead
        else:
            return replace(passed, host=socket.gethostname(), version=version)
    where = directory or Path.cwd()
    return Facts(
        who=_who(where),
        host=socket.gethostname(),
        environment=environment,
        version=version,
        commit=_git(where, "rev-parse", "HEAD"),
        run_id=run_id,
    )


def _version() -> str:
    """kubemigrate's version, as installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("kubemigrate")
    except PackageNotFoundError:
        return "unknown"


def _who(directory: Path) -> str:
    """The OS user, with the CI's actor, or else the git user, in brackets."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's uid with no passwd entry
        user = f"uid {os.getuid()}"
    for name in CI_ACTORS:
        if os.environ.get(name):
            return f"{user} (ci: {os.environ[name]})"
    git_user = _git(directory, "config", "user.email")
    return f"{user} (git: {git_user})" if git_user else user


def _git(directory: Path, *args: str) -> str | None:
    """What `git ARGS` prints in `directory`, or None (no git, no repository, no answer)."""
    from kubemigrate.process import children, programs
    from kubemigrate.settings.declared import SECRET_NAMES

    git = programs.locate("git")
    if git is None:
        return None
    finished = children.run(
        programs.command(git),
        *args,
        cwd=str(directory),
        env=children.plain_environ(SECRET_NAMES),
        timeout=10,
    )
    text = finished.output.strip()
    return text if finished.ok and text else None
