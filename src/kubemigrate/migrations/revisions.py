"""The migrations' revision graph, read from the files without running them.

Alembic's `ScriptDirectory` executes every revision file to learn its `revision` and
`down_revision`, and those files import SQLAlchemy, SQLModel and at times the application
itself (whose settings may exist only in the environment of a migration run); importing any
part of Alembic costs about 0.3 s more. The heads, the chain of pending revisions and each
one's message need none of it: each revision file states its identifiers as plain literals,
which `ast` reads without running the file.

`read(ini)` returns the graph when the project is laid out the common way: `script_location`
a directory in `alembic.ini`'s `[alembic]` section, versions in its `versions/` directory, and
every revision file stating `revision` and `down_revision` (and `depends_on`, if any, as None)
as literals. For anything else (a package resource, `version_locations`, recursive or
sourceless versions, a computed identifier, dependencies between branches) it returns None
and the caller asks Alembic, which handles every case: the fast path never guesses.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IDENTIFIERS = ("revision", "down_revision", "branch_labels", "depends_on")
# Alembic's own rule for which files in a versions directory are revisions.
REVISION_FILE = re.compile(r"(?!\.\#|__init__)(.*\.py)$")
UNSUPPORTED_OPTIONS = ("version_locations", "recursive_version_locations", "sourceless")


@dataclass(frozen=True)
class Graph:
    """Each revision and the revisions it follows; where known, each one's message (the first
    paragraph of its docstring, as Alembic's `Script.doc`) and file."""

    parents: dict[str, tuple[str, ...]]
    docs: dict[str, str] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)
    phases: dict[str, str] = field(default_factory=dict)  # "post" where a file says so

    def phase(self, revision: str) -> str:
        """When the revision runs in a release: "pre" (before the rollout) or "post"."""
        return self.phases.get(revision, "pre")

    @classmethod
    def from_rows(cls, rows: Iterable[dict[str, Any]]) -> Graph:
        """The graph of `rows` as `as_rows` gives them (from Alembic, in this process or in a
        child)."""
        rows = list(rows)
        return cls(
            {row["revision"]: tuple(row["parents"]) for row in rows},
            {row["revision"]: str(row["doc"]) for row in rows},
            {row["revision"]: Path(row["path"]) for row in rows},
            {row["revision"]: str(row.get("phase") or "pre") for row in rows},
        )

    def as_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "revision": revision,
                "parents": list(parents),
                "doc": self.docs.get(revision, ""),
                "path": str(self.paths.get(revision, "")),
                "phase": self.phase(revision),
            }
            for revision, parents in self.parents.items()
        ]

    def resolve(self, name: str) -> str:
        """The revision `name` names: itself, or the one revision it is a prefix of (as
        Alembic takes a partial id); a `LookupError` saying why otherwise."""
        if name in self.parents:
            return name
        found = [revision for revision in self.parents if revision.startswith(name)]
        if len(found) == 1:
            return found[0]
        raise LookupError(
            f"no revision {name!r}" if not found else f"{name!r} names several revisions"
        )

    def chain(self, start: str | None) -> list[str]:
        """The revisions after `start` (None: from base) up to the heads, each after the ones
        it follows (ties in id order)."""
        wanted = set(self.parents)
        if start is not None:
            wanted = {r for r in self.parents if start in self.ancestors(r)}
        done: list[str] = []
        placed: set[str] = set()
        while len(done) < len(wanted):
            ready = sorted(
                r
                for r in wanted - placed
                if all(p in placed or p not in wanted for p in self.parents[r])
            )
            if not ready:  # a cycle: Alembic refuses it where it matters
                break
            done += ready
            placed.update(ready)
        return done

    def children(self, revision: str) -> list[str]:
        return [child for child, parents in self.parents.items() if revision in parents]

    def heads(self) -> list[str]:
        """The revisions no other follows."""
        followed = {parent for parents in self.parents.values() for parent in parents}
        return sorted(revision for revision in self.parents if revision not in followed)

    def describe(self, revision: str) -> str:
        """The line `alembic current` prints for `revision` (without --verbose)."""
        children = self.children(revision)
        return "".join(
            [
                revision,
                " (head)" if not children else "",
                " (branchpoint)" if len(children) > 1 else "",
                " (mergepoint)" if len(self.parents[revision]) > 1 else "",
            ]
        )

    def current(self, recorded: Iterable[str]) -> list[str] | None:
        """The recorded revisions that are no other recorded revision's ancestor, sorted;
        None if one of them is not in the graph (Alembic then says which)."""
        wanted = set(recorded)
        if not wanted <= self.parents.keys():
            return None
        below = {ancestor for revision in wanted for ancestor in self.ancestors(revision)}
        return sorted(wanted - below)

    def ancestors(self, revision: str) -> set[str]:
        """Every revision `revision` follows, directly or not."""
        seen: set[str] = set()
        todo = list(self.parents.get(revision, ()))
        while todo:
            parent = todo.pop()
            if parent not in seen:
                seen.add(parent)
                todo.extend(self.parents.get(parent, ()))
        return seen


def read(ini: Path) -> Graph | None:
    """The revision graph of the project configured by `ini`, or None (see the docstring)."""
    versions = _versions_directory(ini)
    if versions is None or not versions.is_dir():
        return None
    parents: dict[str, tuple[str, ...]] = {}
    docs: dict[str, str] = {}
    paths: dict[str, Path] = {}
    phases: dict[str, str] = {}
    for path in sorted(versions.iterdir()):
        if not path.is_file() or not REVISION_FILE.match(path.name):
            continue
        found = _identifiers(path)
        if found is None or found[0] in parents:
            return None
        revision, down, docs[revision], phases[revision] = found
        parents[revision], paths[revision] = down, path
    if any(parent not in parents for down in parents.values() for parent in down):
        return None
    return Graph(parents, docs, paths, phases)


def diagnose(ini: Path, shown: Callable[[Path], str] = str) -> str | None:
    """What is wrong with the revision files of the project `ini` configures, said as one
    line naming the file (`shown` renders its path) and what to do; None when `ast` finds
    nothing wrong (the files may still fail when run).

    Looked for, as the files are read: one that does not parse, a `down_revision` that names
    no revision, and two files stating the same revision.
    """
    versions = _versions_directory(ini)
    if versions is None or not versions.is_dir():
        return None
    stated: dict[str, Path] = {}
    follows: list[tuple[Path, str]] = []
    all_stated = True  # a computed id could be what a down_revision names
    for path in sorted(versions.iterdir()):
        if not path.is_file() or not REVISION_FILE.match(path.name):
            continue
        try:
            tree = ast.parse(path.read_bytes())
        except SyntaxError as exc:
            return (
                f"{shown(path)}:{exc.lineno}: SyntaxError: {exc.msg}; fix that revision "
                "file (nothing was changed)"
            )
        except (OSError, ValueError) as exc:
            return f"{shown(path)} cannot be read ({exc}); fix or remove it (nothing was changed)"
        found = _stated(tree)
        if found is None:
            all_stated = False
            continue
        revision, down = found
        if revision in stated:
            return (
                f"{shown(path)} states revision {revision!r}, as {shown(stated[revision])} "
                "does: give one of them a new id (and fix the down_revision that follows it)"
            )
        stated[revision] = path
        follows += [(path, parent) for parent in down]
    for path, parent in follows:
        if all_stated and parent not in stated:
            return (
                f"{shown(path)}: down_revision {parent!r} names no revision in {shown(versions)}"
                "; set it to the revision this one follows (nothing was changed)"
            )
    return None


def _versions_directory(ini: Path) -> Path | None:
    from kubemigrate.errors import SettingsError
    from kubemigrate.migrations.layout import Layout

    try:
        found = Layout.read(ini)
    except SettingsError:
        return None
    if any(found.option(name) for name in UNSUPPORTED_OPTIONS):
        return None
    return found.versions


def _identifiers(path: Path) -> tuple[str, tuple[str, ...], str, str] | None:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return None
    found = _stated(tree)
    if found is None:
        return None
    return (*found, doc(ast.get_docstring(tree, clean=False)), phase(tree))


def phase(tree: ast.Module) -> str:
    """The phase a revision file declares (`phase = "post"` at module level; Alembic ignores
    it): its value as written, "pre" when it declares none or not as a literal string."""
    for node in tree.body:
        target, value = _assignment(node)
        if target == "phase" and isinstance(value, ast.Constant) and isinstance(value.value, str):
            return value.value
    return "pre"


def doc(docstring: str | None) -> str:
    """A revision's message as Alembic's `Script.doc` has it: its docstring's first
    paragraph."""
    return re.split("\n\n", (docstring or "").strip())[0]


def identifiers(text: str) -> tuple[str, tuple[str, ...]] | None:
    """`revision` and `down_revision` of one revision file's text, read as literals; None when
    the file does not state them so, or depends on other revisions."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    return _stated(tree)


def _stated(tree: ast.Module) -> tuple[str, tuple[str, ...]] | None:
    values: dict[str, object] = {}
    for node in tree.body:
        target, value = _assignment(node)
        if target in IDENTIFIERS:
            try:
                values[target] = ast.literal_eval(value) if value is not None else None
            except ValueError:
                return None
    revision, down = values.get("revision"), values.get("down_revision")
    if not isinstance(revision, str) or values.get("depends_on") is not None:
        return None
    if down is None:
        return revision, ()
    if isinstance(down, str):
        return revision, (down,)
    if isinstance(down, (tuple, list)) and all(isinstance(d, str) for d in down):
        return revision, tuple(down)
    return None


def _assignment(node: ast.stmt) -> tuple[str | None, ast.expr | None]:
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
        return (target.id, node.value) if isinstance(target, ast.Name) else (None, None)
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id, node.value
    return None, None
