"""The revisions a branch adds: those in the working tree and absent from a git ref.

`added(settings, graph, versions, ref)` is `inv db.plan --base REF`. It reads the ref's revision
files with git (`git ls-tree`, then one `git cat-file --batch` for their contents), and their
identifiers with `ast`, as `kubemigrate.migrations.revisions` reads the working tree's. It then
checks the merged tree, that is the working tree's revisions together with the ref's: one head, and
every added revision descending from the ref's head. A branch made before the ref gained a revision
fails that check, whether the checkout is the branch or its merge with the ref.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kubemigrate.errors import MigrationError, SettingsError
from kubemigrate.migrations.revisions import REVISION_FILE, Graph, identifiers

if TYPE_CHECKING:
    from kubemigrate.settings.declared import Settings


@dataclass(frozen=True)
class Added:
    """The ref's head (where the branch's revisions start) and the branch's own revisions."""

    base_head: str | None
    revisions: frozenset[str]


def added(settings: Settings, tree: Graph, versions: Path | None, ref: str) -> Added:
    """The revisions of the working tree (`tree`, whose versions directory is `versions`)
    absent from `ref`, checked on the merged tree; a `MigrationError` saying what to do when
    the check fails."""
    base = Graph(_ref_revisions(settings, tree, versions, ref))
    base_heads = base.heads()
    if len(base_heads) > 1:
        raise MigrationError(
            f"{ref} has {len(base_heads)} heads ({', '.join(base_heads)}): merge them there "
            "first (`inv db.merge`)"
        )
    base_head = base_heads[0] if base_heads else None
    merged = Graph({**base.parents, **tree.parents})
    heads = merged.heads()
    if len(heads) > 1:
        raise MigrationError(
            f"the working tree and {ref} together have {len(heads)} heads ({', '.join(heads)}): "
            f"{ref} gained revisions after this branch; start its first revision from "
            f"{ref}'s head {base_head} (its down_revision)"
        )
    new = frozenset(tree.parents) - frozenset(base.parents)
    if base_head is not None:
        behind = sorted(r for r in new if base_head not in merged.ancestors(r))
        if behind:
            raise MigrationError(
                f"revision {behind[0]} does not follow {ref}'s head {base_head}: start the "
                f"branch's first revision from {base_head} (its down_revision)"
            )
    return Added(base_head, new)


def _ref_revisions(
    settings: Settings, tree: Graph, versions: Path | None, ref: str
) -> dict[str, tuple[str, ...]]:
    """Each revision `ref`'s tree holds in the project's versions directories, with the
    revisions it follows."""
    top = Path(_git(settings.project_dir, ref, "rev-parse", "--show-toplevel").strip())
    locations = {versions} if versions is not None else set()
    locations |= {path.parent for path in tree.paths.values()}
    paths = []
    for location in sorted(locations):
        relative = _relative(location.resolve(), top)
        listed = _git(top, ref, "ls-tree", "--name-only", "-z", ref, "--", f"{relative}/")
        paths += [p for p in listed.split("\0") if REVISION_FILE.match(Path(p).name)]
    parents: dict[str, tuple[str, ...]] = {}
    for path, text in _contents(top, ref, paths):
        found = identifiers(text)
        if found is None:
            raise MigrationError(
                f"{ref}:{path} does not state its revision and down_revision as literals; "
                "--base cannot read it (use --since REV)"
            )
        parents[found[0]] = found[1]
    return parents


def _relative(location: Path, top: Path) -> str:
    try:
        return location.relative_to(top.resolve()).as_posix()
    except ValueError:
        raise SettingsError(
            f"the migrations ({location}) are outside the git repository at {top}; "
            "--base reads them from git"
        ) from None


def _contents(top: Path, ref: str, paths: list[str]) -> list[tuple[str, str]]:
    """The text of each of `ref`'s `paths`, from one `git cat-file --batch`."""
    if not paths:
        return []
    from kubemigrate.process import children, programs

    asked = "".join(f"{ref}:{path}\n" for path in paths).encode()
    done = children.run(programs.command("git"), "cat-file", "--batch", cwd=str(top), input=asked)
    if not done.ok:
        raise MigrationError(done.describe(f"git cat-file of {ref}'s revisions"))
    data = done.data
    found = []
    for path in paths:
        header, _, data = data.partition(b"\n")
        fields = header.split()
        if len(fields) != 3 or not fields[2].isdigit():
            raise MigrationError(f"git cat-file could not read {ref}:{path}")
        size = int(fields[2])
        found.append((path, data[:size].decode("utf-8", errors="replace")))
        data = data[size + 1 :]
    return found


def _git(cwd: Path, ref: str, *args: str) -> str:
    """git's output; one line saying what to do when git is missing or refuses."""
    import sh

    from kubemigrate.process import children, programs

    try:
        done = children.run(programs.command("git"), *args, cwd=str(cwd))
    except sh.CommandNotFound:
        raise SettingsError("git is not installed: --base reads the ref with git") from None
    if not done.ok:
        hint = (
            "run it in a git checkout of the project"
            if args[0] == "rev-parse"
            else f"fetch the ref first (`git fetch origin {ref.removeprefix('origin/')}`)"
        )
        raise MigrationError(
            f"--base {ref}: git {args[0]} failed in {cwd} ({done.errors.summary()}); {hint}"
        )
    return done.output
