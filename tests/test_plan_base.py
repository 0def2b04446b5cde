"""`inv db.plan --base GITREF` on a temporary git repository: the plan holds exactly the
revisions the branch adds, and the merged tree is checked (one head, the branch's revisions
descending from the base's head)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Project

pytestmark = pytest.mark.e2e


def git(root: Path, *args: str) -> str:
    """git in `root`, with an identity of its own and no user or system configuration."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    done = subprocess.run(
        ["git", *args], cwd=root, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


@pytest.fixture
def repository(project: Project) -> str:
    """The project as a git repository whose `main` holds this repository's migrations, on a
    branch `feature` that adds two revisions; the head of main."""
    git(project.root, "init", "-q", "-b", "main")
    git(project.root, "add", "-A")
    git(project.root, "commit", "-q", "-m", "base")
    head = project.head()
    git(project.root, "checkout", "-q", "-b", "feature")
    project.add_revision(
        "bbbb00000001", head, 'op.add_column("book", sa.Column("isbn", sa.Text()))'
    )
    project.add_revision("bbbb00000002", "bbbb00000001", 'op.drop_column("book", "author")')
    git(project.root, "add", "-A")
    git(project.root, "commit", "-q", "-m", "feature")
    return head


def planned(project: Project, *argv: str) -> dict:
    shown = project.inv("db.plan", *argv, "--format", "json", "--fail-on", "never")
    assert shown.code == 0, shown.output
    return json.loads(shown.stdout)


def test_the_plan_holds_exactly_the_branchs_revisions(project: Project, repository: str) -> None:
    report = planned(project, "--base", "main")
    assert [r["revision"] for r in report["revisions"]] == ["bbbb00000001", "bbbb00000002"]
    assert report["base"] == "main" and report["from"] == repository
    # Uncommitted revisions in the working tree count too: the tree is what is planned.
    project.add_revision("bbbb00000003", "bbbb00000002", 'op.drop_table("book")')
    report = planned(project, "--base", "main")
    assert [r["revision"] for r in report["revisions"]][-1] == "bbbb00000003"
    # A base that already has the branch's revisions leaves nothing to plan.
    assert planned(project, "--base", "feature")["revisions"][0]["revision"] == "bbbb00000003"
    text = project.inv("db.plan", "--base", "main", "--fail-on", "never")
    assert f"from {repository} (main's head)" in text.stdout, text.output


def test_a_base_revision_in_another_encoding_is_read(project: Project) -> None:
    """git hands over bytes: a Latin-1 revision file must not shift the files after it."""
    head = project.head()
    (project.versions / "0000_latin.py").write_bytes(
        b'# -*- coding: latin-1 -*-\n"""caf\xe9"""\n\nrevision = "eeee00000001"\n'
        + f"down_revision = {head!r}\n".encode()
        + b"branch_labels = None\ndepends_on = None\n\n\ndef upgrade() -> None:\n    pass\n"
        + b"\n\ndef downgrade() -> None:\n    pass\n"
    )
    git(project.root, "init", "-q", "-b", "main")
    git(project.root, "add", "-A")
    git(project.root, "commit", "-q", "-m", "base")
    project.add_revision("eeee00000002", "eeee00000001")
    report = planned(project, "--base", "main")
    assert [r["revision"] for r in report["revisions"]] == ["eeee00000002"]
    assert report["from"] == "eeee00000001"


def test_a_base_that_moved_on_is_refused_until_the_branch_follows_it(
    project: Project, repository: str
) -> None:
    git(project.root, "checkout", "-q", "main")
    project.add_revision(
        "cccc00000001", repository, 'op.add_column("user", sa.Column("x", sa.Text()))'
    )
    git(project.root, "add", "-A")
    git(project.root, "commit", "-q", "-m", "main moves on")
    git(project.root, "checkout", "-q", "feature")

    # The branch as checked out: main's new revision is not in the tree, but in the merge.
    refused = project.inv("db.plan", "--base", "main")
    assert refused.code == 1
    (line,) = refused.stderr.strip().splitlines()
    assert "together have 2 heads" in line and "cccc00000001" in line and "bbbb00000002" in line

    # Merged without following main: two heads in the tree itself.
    git(project.root, "merge", "-q", "--no-edit", "main")
    assert "together have 2 heads" in project.inv("db.plan", "--base", "main").stderr

    # The branch's first revision now follows main's head: planned, main's revision is not.
    first = project.versions / "bbbb00000001.py"
    first.write_text(first.read_text().replace(repr(repository), "'cccc00000001'"))
    report = planned(project, "--base", "main")
    assert [r["revision"] for r in report["revisions"]] == ["bbbb00000001", "bbbb00000002"]
    assert report["from"] == "cccc00000001"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (("--base", "nosuch"), "git ls-tree failed"),
        (("--base", "main", "--since", "base"), "--since and --base"),
    ],
)
def test_refusals_are_one_line(
    project: Project, repository: str, argv: tuple[str, ...], said: str
) -> None:
    refused = project.inv("db.plan", *argv)
    assert refused.code == 1
    (line,) = refused.stderr.strip().splitlines()
    assert said in line, line
    if "nosuch" in argv:
        assert line.endswith("(`git fetch origin nosuch`)"), line


def test_outside_a_git_repository(project: Project) -> None:
    refused = project.inv("db.plan", "--base", "main")
    assert refused.code == 1
    (line,) = refused.stderr.strip().splitlines()
    assert "--base main: git rev-parse failed" in line and "a git checkout" in line, line
