"""Releases in two phases: the revisions that run before the rollout, and those after it.

A revision is pre-deploy (the default) or post-deploy, as its file declares at module level
(`phase = "post"`, read with `ast` like its identifiers; Alembic ignores it). In an environment
with phases (`KUBEMIGRATE_PHASES`, on by default where `KUBEMIGRATE_PROTECTED` is), the pending
revisions split in three, in the order they run (`Split`):

- `pre`: those before the first pending post-deploy revision, which the old and the new code
  both survive (expand): they run before the rollout;
- `post`: the post-deploy revisions that follow, which only the new code survives (contract):
  they run once the rollout is done;
- `waiting`: the revisions after those, which wait for the next release (a pre-deploy revision
  there cannot run before the post-deploy one it follows).

A replica waits (`db.await`) until nothing of `pre` is left. Running a phase, and waiting, is
`kubemigrate.migrations.phase_runs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubemigrate.errors import MigrationError

if TYPE_CHECKING:
    from kubemigrate.migrations.revisions import Graph
    from kubemigrate.settings.declared import Settings

PRE, POST = "pre", "post"
PHASES = (PRE, POST)


def enabled(settings: Settings) -> bool:
    """Whether the environment runs its migrations in two phases (KUBEMIGRATE_PHASES; by
    default, where it is protected)."""
    return settings.phases if settings.phases is not None else settings.protected


@dataclass(frozen=True)
class Split:
    """The pending revisions, in the order they run, by when they run."""

    pre: list[str] = field(default_factory=list)
    post: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)

    def target(self, phase: str) -> str | None:
        """The revision the phase upgrades to (None: nothing to do)."""
        revisions = self.pre if phase == PRE else self.post
        return revisions[-1] if revisions else None

    def said(self, phase: str) -> str:
        """One line on what the phase leaves pending, and when it runs (empty: nothing)."""
        parts = []
        if phase == PRE and self.post:
            parts.append(
                f"left for after the rollout (post-deploy): {', '.join(self.post)}; "
                "run `inv db.upgrade --post` once the new code is out"
            )
        if self.waiting:
            parts.append(
                f"waiting for the next release (they follow a post-deploy revision): "
                f"{', '.join(self.waiting)}"
            )
        return "; ".join(parts)


def split(graph: Graph, heads: tuple[str, ...]) -> Split:
    """How the revisions pending after `heads` split by phase; a `MigrationError` when a
    revision declares a phase other than pre or post, or the pending revisions do not form one
    line (each phase upgrades to one revision)."""
    applied = set(heads) | {a for head in heads for a in graph.ancestors(head)}
    pending = [r for r in graph.chain(None) if r not in applied]
    for revision in pending:
        if graph.phase(revision) not in PHASES:
            where = graph.paths.get(revision, revision)
            raise MigrationError(
                f'{where} declares phase = {graph.phase(revision)!r}; write "pre" or "post"'
            )
    first_post = next((i for i, r in enumerate(pending) if graph.phase(r) == POST), len(pending))
    after = pending[first_post:]
    contract = next((i for i, r in enumerate(after) if graph.phase(r) == PRE), len(after))
    found = Split(pending[:first_post], after[:contract], after[contract:])
    for revisions, before in ((found.pre, applied), (found.post, applied | set(found.pre))):
        if revisions and not _in_line(graph, revisions, before):
            raise MigrationError(
                "the pending revisions are not in one line, which phases need: merge the heads "
                "with `inv db.merge` first"
            )
    return found


def _in_line(graph: Graph, revisions: list[str], applied: set[str]) -> bool:
    """Whether upgrading to the last of `revisions` applies exactly them."""
    last = revisions[-1]
    return ({last} | graph.ancestors(last)) - applied == set(revisions)


def awaited(graph: Graph, heads: tuple[str, ...]) -> bool:
    """Whether a database at `heads` has what this image's code needs: no pre-deploy revision
    of its files is left to run before the rollout (a database past the files, at a revision
    they do not know, is a newer release's: it has it too)."""
    if any(head not in graph.parents for head in heads):
        return True
    return not split(graph, heads).pre


def describe(found: Split) -> dict[str, Any]:
    return {"pre": found.pre, "post": found.post, "waiting": found.waiting}
