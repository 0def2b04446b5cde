"""One Alembic command on a `Config`, in whichever process runs it (`alembic_command`): what
it gives back is plain data (paths, graph rows, SQL per span) that the child Alembic process
can send to its parent as JSON. A revision or merge is all or nothing: a file Alembic began
under its final name is removed when writing it fails."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubemigrate.errors import MigrationError
from kubemigrate.migrations.config import scripts

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import Script, ScriptDirectory


def alembic_command(config: Config, name: str, arguments: dict[str, Any]) -> Any:
    """Alembic's command `name` on `config` (in this process or in the child), with
    `arguments` as the functions below pass them. What it gives is plain data (it may cross
    from the child as JSON): the paths of the files it wrote, the revision graph's rows
    (`graph`), or the SQL of each span (`render`); None for the commands that print."""
    from alembic import command

    from kubemigrate.migrations.autogenerate import revision_rules

    sql = bool(arguments.get("sql"))
    match name:
        case "upgrade":
            command.upgrade(config, arguments["revision"], sql=sql)
        case "downgrade":
            command.downgrade(config, arguments["revision"], sql=sql)
        case "stamp":
            command.stamp(config, arguments["revision"], sql=sql, purge=arguments["purge"])
        case "check":
            _check(config)
        case "revision" if arguments.get("autogenerate", True):
            with _all_or_nothing(config):
                return _paths(
                    command.revision(
                        config,
                        message=arguments["message"],
                        autogenerate=True,
                        process_revision_directives=revision_rules,
                    )
                )
        case "revision":
            with _all_or_nothing(config):
                return _paths(command.revision(config, message=arguments["message"]))
        case "merge":
            with _all_or_nothing(config):
                return _paths(
                    command.merge(config, arguments["revisions"], message=arguments["message"])
                )
        case "current":
            _describe_current(config, arguments["recorded"], arguments["verbose"], arguments["db"])
        case "history":
            command.history(config, rev_range=arguments["range"], verbose=arguments["verbose"])
        case "heads":
            command.heads(config, verbose=arguments["verbose"])
        case "show":
            command.show(config, arguments["revision"])
        case "graph":
            return graph_rows(scripts(config))
        case "render":
            scripts(config).get_heads()  # a broken revision file is said as such, not "offline"
            with _alembic_logs(arguments.get("log", True)):
                return [_render(config, span) for span in arguments["spans"]]
        case _:
            raise MigrationError(f"unknown Alembic command {name!r}")
    return None


@contextmanager
def _all_or_nothing(config: Config) -> Iterator[None]:
    """A revision file Alembic writes (it writes it itself, under its final name) is removed
    again if the command fails: a full disk or a read-only directory leaves no empty or partial
    file behind, which every later task would trip over; the failure is one line."""
    from kubemigrate.files import cannot_write

    directory = Path(scripts(config).versions)
    before = set(directory.iterdir()) if directory.is_dir() else set()
    try:
        yield
    except BaseException as exc:
        for path in set(directory.iterdir()) - before if directory.is_dir() else ():
            with suppress(OSError):
                path.unlink()
        if isinstance(exc, OSError):
            where = exc.filename or directory
            raise MigrationError(
                cannot_write("the revision file", where, exc, "nothing was written")
            ) from None
        raise


def _describe_current(config: Config, recorded: list[str], verbose: bool, shown: str) -> None:
    """What `alembic current` prints for the `recorded` revisions, without running env.py."""
    if verbose:
        config.print_stdout("Current revision(s) for %s:", shown)
    for script in scripts(config).get_all_current(tuple(recorded)):
        if script is not None:
            config.print_stdout(script.cmd_format(verbose))


def graph_rows(directory: ScriptDirectory) -> list[dict[str, Any]]:
    """The rows of `Graph.from_rows`, from Alembic's script directory."""
    from alembic.util import to_tuple

    return [
        {
            "revision": script.revision,
            "parents": list(to_tuple(script.down_revision, default=())),
            "doc": script.doc,
            "path": script.path,
            "phase": _phase(script),
        }
        for script in directory.walk_revisions()
    ]


def _phase(script: Script) -> str | None:
    """The phase a revision module declares (`phase = "post"`), if it declares one as text."""
    declared = getattr(script.module, "phase", None)
    return declared if isinstance(declared, str) else None


@contextmanager
def _alembic_logs(shown: bool) -> Iterator[None]:
    """Alembic's progress lines as they are (`shown`), or left out for the while."""
    import logging

    logger = logging.getLogger("alembic")
    level = logger.level
    if not shown:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _render(config: Config, span: str) -> str | None:
    """The offline SQL of `span` (`FROM:TO`, or `TO` from base); None when it cannot render
    offline (a data migration that reads the database, `op.get_bind()`, and the like)."""
    from alembic import command

    config.output_buffer = io.StringIO()
    try:
        command.upgrade(config, span, sql=True)
    except Exception:
        return None
    return config.output_buffer.getvalue()


def _check(config: Config) -> None:
    from alembic import command
    from alembic.util.exc import AutogenerateDiffsDetected

    config.stdout = io.StringIO()  # the verdict is the caller's
    try:
        command.check(config)
    except AutogenerateDiffsDetected as exc:
        raise MigrationError(
            "the models and the migrations disagree; run `inv db.revision MESSAGE` to "
            f"write a migration for: {_diffs(exc)}"
        ) from None


def _diffs(exc: Exception) -> str:
    diffs = getattr(exc, "diffs", None)
    if diffs:
        return "; ".join(_describe(diff) for diff in diffs)
    return str(exc).split(":", 1)[-1].strip()


def _describe(diff: Any) -> str:
    if isinstance(diff, tuple) and diff and isinstance(diff[0], str):
        names = [getattr(part, "name", None) for part in diff[1:]]
        named = [str(n) for n in names if n]
        return " ".join([diff[0], *named])
    if isinstance(diff, list):
        return ", ".join(_describe(d) for d in diff)
    return str(diff)


def _paths(result: Script | list[Script | None] | None) -> list[str]:
    items = result if isinstance(result, list) else [result]
    return [str(s.path) for s in items if s is not None]
