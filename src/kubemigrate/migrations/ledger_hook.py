"""The ledger's rows, written by Alembic's own run: in the step's transaction, on env.py's
connection, whichever process runs env.py (this one, or the child Alembic process).

`hooked` wraps two of Alembic's methods for the length of a command. `EnvironmentContext.configure`
gets the `Recorder` as one more `on_version_apply` callback (Alembic calls it inside each step's
transaction, after it updated the version table), and an `include_name` that keeps the ledger
table out of autogenerate's comparison. `MigrationContext.run_migrations` tells the recorder the
heads it starts from, and when, before the first step; each row's start is the previous row's
end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubemigrate.migrations.ledger import Row, Table, append, checksum, now
from kubemigrate.models import include_name

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext, MigrationInfo

    from kubemigrate.migrations.provenance import Facts
    from kubemigrate.migrations.revisions import Graph


@dataclass
class Recorder:
    """An `on_version_apply` callback writing a ledger row for each step into `table`.

    The facts (who, where, which commit) are collected when the first row is written, in
    `directory` (the project's checkout), for `environment`, under the invocation's `run_id`.
    """

    table: Table
    environment: str
    run_id: str
    directory: Path | None = None
    before: set[str] = field(default_factory=set)
    mark: datetime = field(default_factory=now)
    written: int = 0
    _facts: Facts | None = None

    def facts(self) -> Facts:
        from kubemigrate.migrations import provenance

        if self._facts is None:
            self._facts = provenance.collect(self.environment, self.directory, self.run_id)
        return self._facts

    def started(self, context: MigrationContext) -> None:
        """A run of migrations begins on `context`: the heads it starts from; and the ledger,
        made if it is not there yet (see `prepare`)."""
        began = context.connection is not None and context.connection.in_transaction()
        self.before = set(context.get_current_heads())
        if prepare(context, self.table, tuple(sorted(self.before)), self.facts) and not began:
            context.connection.commit()  # type: ignore[union-attr]
        self.mark = now()

    def __call__(
        self, *, ctx: MigrationContext, step: MigrationInfo, heads: set[str], run_args: Any
    ) -> None:
        if ctx.as_sql:
            return
        finished = now()
        rows = [
            Row.of(
                revision,
                action,
                checksum=checksum(path) if path else None,
                facts=self.facts(),
                started=self.mark,
                finished=finished,
                before=self.before,
                after=heads,
            )
            for revision, action, path in steps(step)
        ]
        append(ctx.connection, self.table, rows)
        self.written += len(rows)
        self.before, self.mark = set(heads), now()


def prepare(
    context: MigrationContext,
    table: Table,
    heads: tuple[str, ...],
    facts: Callable[[], Facts],
) -> bool:
    """Create the ledger on `context`'s connection if it is not there yet, with a `baseline`
    row for each revision `heads` include: a database that bare Alembic migrated is adopted as
    it is. In the connection's transaction: with env.py's own (committed or rolled back with
    the migrations), or alone. Whether it made it."""
    from sqlalchemy.exc import DBAPIError

    from kubemigrate.migrations.ledger import baseline, cannot_create, create, exists
    from kubemigrate.postgres.connections import driver_message

    connection = context.connection
    if connection is None or exists(connection, table):
        return False
    try:
        rows = baseline(_graph(context), heads, facts()) if heads else []
        create(connection, table, rows)
    except DBAPIError as exc:
        raise cannot_create(table, driver_message(exc)) from None
    return True


def _graph(context: MigrationContext) -> Graph:
    """The revision graph of the run's script directory (its files, as Alembic reads them)."""
    from kubemigrate.migrations.executor import graph_rows
    from kubemigrate.migrations.revisions import Graph

    if context.script is None:
        return Graph({})
    return Graph.from_rows(graph_rows(context.script))


def steps(step: MigrationInfo) -> list[tuple[str, str, str | None]]:
    """The revision, action and file of each row one Alembic step makes: the revision it
    applies or reverts; for a stamp, each revision it stamps (`base` for none)."""
    if step.is_stamp:
        stamped = list(step.destination_revision_ids) or ["base"]
        return [(revision, "stamp", _path(step, revision)) for revision in stamped]
    revision = str(step.up_revision_id)
    action = "upgrade" if step.is_upgrade else "downgrade"
    return [(revision, action, _path(step, revision))]


def _path(step: MigrationInfo, revision: str) -> str | None:
    try:
        script = step.revision_map.get_revision(revision)
    except Exception:  # "base", or a revision the files no longer have
        return None
    return getattr(script, "path", None)


def options(kwargs: dict[str, Any], recorder: Recorder | None) -> None:
    """env.py's `configure` options, with the ledger left out of autogenerate and, with a
    `recorder`, its callback after env.py's own."""
    theirs = kwargs.get("include_name")
    kwargs["include_name"] = _both(include_name, theirs) if theirs else include_name
    if recorder is not None:
        callbacks = kwargs.get("on_version_apply") or []
        callbacks = [callbacks] if callable(callbacks) else list(callbacks)
        kwargs["on_version_apply"] = [*callbacks, recorder]


def _both(ours: Callable[..., bool], theirs: Callable[..., bool]) -> Callable[..., bool]:
    def included(*args: Any) -> bool:
        return ours(*args) and theirs(*args)

    return included


@contextmanager
def hooked(recorder: Recorder | None) -> Iterator[None]:
    """Alembic's `configure` and `run_migrations` wrapped (see the module) for the block."""
    from alembic.runtime.environment import EnvironmentContext
    from alembic.runtime.migration import MigrationContext

    configure = EnvironmentContext.configure
    run_migrations = MigrationContext.run_migrations

    def configured(self: Any, *args: Any, **kwargs: Any) -> Any:
        options(kwargs, recorder)
        return configure(self, *args, **kwargs)

    def run(self: MigrationContext, **kw: Any) -> None:
        if recorder is not None and not self.as_sql:
            recorder.started(self)
        run_migrations(self, **kw)

    EnvironmentContext.configure = configured  # type: ignore[method-assign]
    MigrationContext.run_migrations = run  # type: ignore[method-assign]
    try:
        yield
    finally:
        EnvironmentContext.configure = configure  # type: ignore[method-assign]
        MigrationContext.run_migrations = run_migrations  # type: ignore[method-assign]
