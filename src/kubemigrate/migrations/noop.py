"""Nothing pending costs nothing: a no-op upgrade found before Alembic, a child or a Job starts.

`already_at` reads the database's revision on the migration lock's connection (held only for
that read) and the revision graph from the files (`kubemigrate.migrations.revisions`, with
`ast`), as `db.current` does. When the database is at the target it says so in one line and
the upgrade ends there; when it is not, or when the read cannot be sure it sees what Alembic
would see, the upgrade takes its full path. The fast read is left aside (`blocked`) for:

- a target other than `head` or a full revision id the files state (`+1`, `heads`, a branch
  label, a partial id);
- a layout that `ast` does not read (a package resource, `version_locations`, recursive or
  sourceless versions, a computed identifier, dependencies between branches);
- several heads in the files, or several rows in the version table;
- an env.py that sets `version_table` or `version_table_schema`, sets a `search_path`, or
  has a loop (migrations run for several schemas or tenants): Alembic's version table may
  then be elsewhere, or several.
"""

from __future__ import annotations

import ast
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from kubemigrate.migrations.layout import Layout
    from kubemigrate.migrations.revisions import Graph
    from kubemigrate.postgres.connections import Database
    from kubemigrate.settings.declared import Settings

# Words in env.py after which its version table may not be the one on the search path.
ENV_PY_WORDS = ("version_table", "search_path")


def blocked(layout: Layout, graph: Graph | None, revision: str) -> str | None:
    """Why the fast read cannot be sure of Alembic's answer (None: it can)."""
    if graph is None:
        return "the revision files are not read with ast"
    heads = graph.heads()
    if len(heads) != 1:
        return "the files have several heads" if heads else "the files have no revision"
    if revision != "head" and revision not in graph.parents:
        return f"the target {revision!r} is not head or a revision id"
    return env_py_blocks(layout)


def env_py_blocks(layout: Layout) -> str | None:
    """Why env.py may keep its version table elsewhere than Alembic's default (None: no)."""
    path = layout.env_py
    if path is None:
        return "env.py is not a file"
    try:
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return "env.py is not read with ast"
    for word in ENV_PY_WORDS:
        if word in text:
            return f"env.py names {word}"
    if any(isinstance(node, (ast.For, ast.AsyncFor, ast.While)) for node in ast.walk(tree)):
        return "env.py has a loop (migrations for several schemas or tenants)"
    return None


def already_at(
    settings: Settings, layout: Layout, revision: str, resolve: Callable[[], Database]
) -> bool:
    """Whether the database (`resolve` gives it, called only when the read can be sure) is at
    `revision` (head, or a revision id) for sure: then say so in one line on stderr. False
    whenever the fast read cannot tell (see `blocked`)."""
    from kubemigrate.migrations import revisions
    from kubemigrate.migrations.recorder import current_heads
    from kubemigrate.postgres.locking import migration_lock

    graph = revisions.read(layout.ini) if layout.script_location is not None else None
    if graph is None or blocked(layout, graph, revision) is not None:
        return False
    target = graph.heads()[0] if revision == "head" else revision
    db = resolve()
    with migration_lock(db, settings.lock_wait) as connection:
        recorded = current_heads(connection)
    if recorded != (target,):
        return False
    shown = f"{target} (head)" if target == graph.heads()[0] else target
    print(f"Nothing to upgrade: {db.name} is at {shown}.", file=sys.stderr)
    return True
