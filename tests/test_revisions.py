"""The revision graph read from the files (for `inv db.current`): it must say what Alembic's
script directory says, and give way to Alembic for every layout it does not read."""

from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from kubemigrate.migrations import revisions
from tests.conftest import REPO, Project


def alembic_lines(ini: Path, recorded: tuple[str, ...]) -> list[str]:
    script = ScriptDirectory.from_config(Config(str(ini)))
    return sorted(s.cmd_format(False) for s in script.get_all_current(recorded) if s)


def our_lines(ini: Path, recorded: tuple[str, ...]) -> list[str]:
    graph = revisions.read(ini)
    assert graph is not None
    shown = graph.current(recorded)
    assert shown is not None
    return sorted(graph.describe(revision) for revision in shown)


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A project copy with a branchpoint, two heads and a merge of them."""
    (tmp_path / "project").mkdir()
    project = Project(tmp_path / "project")
    monkeypatch.chdir(project.root)
    root = "f2030d31309f"
    project.add_revision("aaaaaaaaaaaa", root)
    project.add_revision("bbbbbbbbbbbb", root)
    project.add_revision("cccccccccccc", ("aaaaaaaaaaaa", "bbbbbbbbbbbb"))
    project.add_revision("dddddddddddd", "bbbbbbbbbbbb")
    return project


@pytest.mark.parametrize(
    "recorded",
    [
        (),
        ("f2030d31309f",),
        ("aaaaaaaaaaaa",),
        ("cccccccccccc",),
        ("cccccccccccc", "dddddddddddd"),
        ("aaaaaaaaaaaa", "bbbbbbbbbbbb"),
        ("f2030d31309f", "aaaaaaaaaaaa"),
    ],
)
def test_the_same_lines_as_alembic(tree: Project, recorded: tuple[str, ...]) -> None:
    ini = tree.root / "alembic.ini"
    assert our_lines(ini, recorded) == alembic_lines(ini, recorded)


def test_this_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    ini = REPO / "alembic.ini"
    graph = revisions.read(ini)
    assert graph is not None
    heads = ScriptDirectory.from_config(Config(str(ini))).get_heads()
    assert our_lines(ini, tuple(heads)) == alembic_lines(ini, tuple(heads))


def test_an_unknown_revision_is_left_to_alembic(tree: Project) -> None:
    graph = revisions.read(tree.root / "alembic.ini")
    assert graph is not None and graph.current(("feedfacecafe",)) is None


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda p: p.add_revision("eeeeeeeeeeee", "dddddddddddd"), None),
        (lambda p: _write(p, "revision = 'ab' + 'cd'\ndown_revision = None\n"), "computed"),
        (lambda p: _write(p, "revision = 'abcd'\ndown_revision = None\ndepends_on = 'x'\n"), "dep"),
        (lambda p: _write(p, "x = 1\n"), "no revision"),
        (lambda p: _ini(p, "version_locations = %(here)s/other"), "version_locations"),
        (lambda p: _ini(p, "script_location = mypackage:migrations", replace=True), "resource"),
    ],
    ids=["plain", "computed", "depends-on", "no-revision", "version-locations", "resource"],
)
def test_layouts_it_does_not_read_give_way(tree: Project, change, why) -> None:
    change(tree)
    graph = revisions.read(tree.root / "alembic.ini")
    assert (graph is None) == (why is not None)


def _write(project: Project, text: str) -> None:
    (project.versions / "odd.py").write_text(text)


def _ini(project: Project, line: str, replace: bool = False) -> None:
    ini = project.root / "alembic.ini"
    text = ini.read_text()
    if replace:
        text = "\n".join(
            line if row.startswith("script_location") else row for row in text.splitlines()
        )
    else:
        text = text.replace("[alembic]\n", f"[alembic]\n{line}\n")
    ini.write_text(text)
