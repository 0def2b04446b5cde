"""The phases of a release, run: one phase's upgrade (`upgrade`), and a replica's wait for the
schema (`wait`). What they decide, from the files and the database's heads, is
`kubemigrate.migrations.phases`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from kubemigrate.errors import MigrationError
from kubemigrate.migrations.phases import PHASES, POST, Split, awaited, split

if TYPE_CHECKING:
    from kubemigrate.migrations.revisions import Graph
    from kubemigrate.settings.declared import Settings


def of_database(settings: Settings) -> tuple[Graph, tuple[str, ...], Split]:
    """The graph, the database's heads, and how its pending revisions split (read-only)."""
    from kubemigrate.migrations.commands import graph
    from kubemigrate.migrations.recorder import current_heads
    from kubemigrate.postgres.connections import connect_plainly
    from kubemigrate.target.database import database

    revisions = graph(settings)
    with connect_plainly(database(settings)) as connection:
        heads = current_heads(connection)
    return revisions, heads, split(revisions, heads)


def nothing_to_apply(settings: Settings, phase: str) -> bool:
    """Whether `phase` has nothing to apply; then say so, as `upgrade` does."""
    _, _, found = of_database(settings)
    if found.target(phase) is not None:
        return False
    _say(found, phase, applied=False)
    return True


def _say(found: Split, phase: str, *, applied: bool) -> None:
    """On stderr: that the phase had nothing to apply (unless it `applied`), and what is
    left for later."""
    if not applied:
        print(f"No {phase}-deploy revision to apply.", file=sys.stderr)
    said = found.said(phase)
    if said:
        print(f"Phases: {said}.", file=sys.stderr)


def upgrade(settings: Settings, phase: str) -> Split:
    """Apply the pending revisions of `phase` (pre: up to, not including, the first pending
    post-deploy one; post: the post-deploy ones after them); say on stderr what is left and
    when it runs. The split as it was before."""
    from kubemigrate.migrations.commands import upgrade as upgrade_to

    if phase not in PHASES:
        raise MigrationError(f"unknown phase {phase!r}; use pre or post")
    _, _, found = of_database(settings)
    target = found.target(phase)
    if phase == POST and found.pre:
        if found.post:
            raise MigrationError(
                f"pre-deploy revisions are pending ({', '.join(found.pre)}): run `inv "
                "db.upgrade` before the rollout, then `inv db.upgrade --post` after it"
            )
        target = None  # those belong to the next release's first phase
    if target is not None:
        upgrade_to(settings, target)
    _say(found, phase, applied=target is not None)
    return found


POLL_INTERVAL = 0.2


def wait(settings: Settings, timeout: float) -> tuple[str, ...]:
    """Poll the database, read-only, until it has what this image's code needs (`awaited`);
    its heads then. A `MigrationError` naming where it is once `timeout` seconds pass; a
    database not reachable yet (still starting) is polled again."""
    import time

    from kubemigrate.errors import KubemigrateError
    from kubemigrate.migrations.commands import graph
    from kubemigrate.migrations.recorder import current_heads
    from kubemigrate.postgres.connections import connect_plainly
    from kubemigrate.target.database import database

    revisions = graph(settings)
    deadline = time.monotonic() + timeout
    where = "not reached yet"
    told = False
    while True:
        try:
            with connect_plainly(database(settings)) as connection:
                connection.autocommit = True  # no transaction held between polls
                while True:
                    heads = current_heads(connection)
                    if awaited(revisions, heads):
                        return heads
                    where = _where(revisions, heads)
                    if not told:
                        print(
                            f"Waiting for the schema: the database is {where}...", file=sys.stderr
                        )
                        told = True
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(POLL_INTERVAL)
        except KubemigrateError as exc:
            where = f"not reachable ({exc})"
        except Exception as exc:  # the connection dropped between polls: connect again
            where = f"not reachable ({type(exc).__name__})"
        if time.monotonic() >= deadline:
            raise MigrationError(
                f"the database did not reach the revisions this image needs within "
                f"{timeout:g}s: it is {where}; run the migration (`inv db.upgrade`, or the "
                "migration Job: `inv db.jobs`), or raise --timeout"
            )
        time.sleep(POLL_INTERVAL)


def _where(graph: Graph, heads: tuple[str, ...]) -> str:
    at = ", ".join(heads) or "base (empty)"
    pending = split(graph, heads).pre
    return f"at {at}, with {', '.join(pending)} to run before the rollout"
