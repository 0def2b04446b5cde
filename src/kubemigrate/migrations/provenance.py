"""Who runs a migration, where, and from which commit: the facts each row of the ledger
(`kubemigrate.migrations.ledger`) carries besides the step itself.

`collect` reads them once, when the first row is written, so a run that applies nothing pays
nothing: the OS user and the CI's actor (or, outside CI, the git author), the host, the git commit
of the working tree, kubemigrate's version. Git's answers are read from the files git keeps (HEAD,
the refs, `user.email` in its config), without running git. A migration Job runs far from the
checkout and the person who asked for it: the task that starts it passes its own facts in
`KUBEMIGRATE_LEDGER_FACTS` (JSON), and the Job records them, with the pod's host name.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import sys
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
        commit=_commit(where),
        run_id=run_id,
    )


def _version() -> str:
    """kubemigrate's version: the package's own `__version__` (loaded before any of its
    modules; importlib.metadata would read every installed distribution for it, 30 ms)."""
    return str(getattr(sys.modules.get("kubemigrate"), "__version__", "unknown"))


def _who(directory: Path) -> str:
    """The OS user, with the CI's actor, or else the git author, in brackets."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's uid with no passwd entry
        user = f"uid {os.getuid()}"
    for name in CI_ACTORS:
        if os.environ.get(name):
            return f"{user} (ci: {os.environ[name]})"
    author = _git_author(directory)
    return f"{user} (git: {author})" if author else user


# Read from the files git keeps, not by running git: each process costs this task about 0.1 s.


def _git_directory(directory: Path) -> Path | None:
    """The git directory of the checkout `directory` is in (a worktree's `.git` file followed)."""
    for folder in (directory.resolve(), *directory.resolve().parents):
        marker = folder / ".git"
        if marker.is_dir():
            return marker
        if marker.is_file():
            text = marker.read_text(encoding="utf-8", errors="replace").strip()
            if text.startswith("gitdir:"):
                return (folder / text.removeprefix("gitdir:").strip()).resolve()
            return None
    return None


def _commit(directory: Path) -> str | None:
    """The commit the checkout's HEAD names (a branch's, or a detached one), or None."""
    try:
        git = _git_directory(directory)
        if git is None:
            return None
        head = (git / "HEAD").read_text(encoding="utf-8").strip()
        if not head.startswith("ref:"):
            return head if re.fullmatch(r"[0-9a-f]{40,64}", head) else None
        ref = head.removeprefix("ref:").strip()
        common = git
        if (git / "commondir").is_file():
            common = (git / (git / "commondir").read_text(encoding="utf-8").strip()).resolve()
        for root in (git, common):
            if (root / ref).is_file():
                return (root / ref).read_text(encoding="utf-8").strip() or None
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                if line.endswith(f" {ref}"):
                    return line.split(" ", 1)[0]
    except OSError:
        return None
    return None  # a branch with no commit yet


def _git_author(directory: Path) -> str | None:
    """The git author: GIT_AUTHOR_EMAIL (or _NAME), else `user.email` of the repository's
    config or the user's."""
    for name in ("GIT_AUTHOR_EMAIL", "GIT_AUTHOR_NAME"):
        if os.environ.get(name):
            return os.environ[name]
    git = _git_directory(directory)
    home = Path.home()
    configs = [git / "config"] if git is not None else []
    configs += [home / ".gitconfig", home / ".config" / "git" / "config"]
    for config in configs:
        found = _user_email(config)
        if found:
            return found
    return None


def _user_email(config: Path) -> str | None:
    """`email` in the `[user]` section of a git config file."""
    try:
        lines = config.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    section = ""
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped.strip("[]").strip().lower()
        elif section == "user" and "=" in stripped:
            key, value = stripped.split("=", 1)
            if key.strip().lower() == "email":
                return value.strip().strip('"') or None
    return None
