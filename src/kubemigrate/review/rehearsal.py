"""`inv db.plan --rehearse`: the pending revisions run on a throwaway copy, their locks and
table rewrites measured.

The copy is a new database on the embedded PostgreSQL, dropped afterwards whatever happens.
It starts from the target's schema (`pg_dump --schema-only`, run where backups run it, restored
with pg_restore, the target's revision recorded) when the plan starts at the target's own
revision; otherwise (the target cannot be reached, or `--since` / `--base` start elsewhere) the
migrations from base up to where the plan starts are applied to it. The target is only read.

Each revision runs statement by statement from its offline SQL, in the transaction its BEGIN
and COMMIT make (one around it all when it has none, as Alembic runs a migration online).
After each statement, in the same transaction, the locks its backend holds (`pg_locks`, tables
only: the strongest mode on each) and each table's `relfilenode` are read: a changed
relfilenode is a rewrite. Locks are held to the end of the transaction, so a
statement's locks include those of the revision's earlier statements, which is what the
application meets while the statement runs. The transaction commits on the copy, so the next
revision finds the schema it expects; dropping the copy undoes it all. A statement the SQL puts
outside a transaction (an autocommit block, for `CONCURRENTLY`) and a revision that renders only
online (it reads the database) run unmeasured, the latter through Alembic on the copy; a
`CONCURRENTLY` left inside a transaction fails on the copy as it would on the target. When
every revision ran, `db.check` runs on the copy: whether the models agree with the schema the
release will leave.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubemigrate.errors import KubemigrateError, MigrationError
from kubemigrate.review.model import MODES

if TYPE_CHECKING:
    from kubemigrate.postgres.embedded import EmbeddedPostgres
    from kubemigrate.settings.declared import Settings

USER_RELATIONS = (
    "SELECT c.oid, c.relname, c.relfilenode FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname <> 'information_schema' "
    "AND n.nspname NOT LIKE 'pg\\_%'"
)
HELD = (
    "SELECT relation, mode FROM pg_locks "
    "WHERE pid = pg_backend_pid() AND locktype = 'relation' AND granted"
)


@dataclass(frozen=True)
class Revision:
    """A revision to rehearse: its statements in order (None: it renders only online)."""

    revision: str
    statements: list[str] | None


@dataclass
class Statement:
    """What one statement did on the copy."""

    statement: str
    locks: dict[str, str] = field(default_factory=dict)  # table: the strongest mode it took
    held: dict[str, str] = field(default_factory=dict)  # table: the revision's, before it ran
    rewrites: list[str] = field(default_factory=list)  # tables whose relfilenode changed
    measured: bool = True  # False: it ran outside a transaction, or in an online-only revision


@dataclass
class Rehearsal:
    server: str  # "PostgreSQL 18.1 (embedded)"
    schema: str  # where the copy's schema came from
    revisions: dict[str, list[Statement]] = field(default_factory=dict)
    failed: tuple[str, str] | None = None  # (revision, the error's first line)
    check: str | None = None  # db.check's verdict on the copy, after the last revision


def strongest(modes: list[str]) -> str:
    return max(modes, key=MODES.index)


def mode_name(lock_mode: str) -> str:
    """`AccessExclusiveLock` (pg_locks) as `ACCESS EXCLUSIVE` (the documentation's name)."""
    return " ".join(re.findall(r"[A-Z][a-z]+", lock_mode.removesuffix("Lock"))).upper()


def rehearse(
    settings: Settings,
    revisions: list[Revision],
    *,
    start: str | None,
    recorded: tuple[str, ...] | None,
    server_major: int = 0,
) -> Rehearsal:
    """Run `revisions` on a throwaway copy of the target (see the module's docstring): the copy
    starts at `start` (None: base); `recorded` is the target's revision and `server_major` its
    major version, as the plan read them (None and 0 when it cannot be reached)."""
    from kubemigrate.postgres.embedded import EmbeddedPostgres

    server = EmbeddedPostgres.for_settings(settings)
    was_running = server.status().running
    server.start()
    try:
        return _rehearse(settings, server, revisions, start, recorded, server_major)
    finally:
        if not was_running:  # leave the machine as it was: a CI job has no server to stop
            server.stop()


def _rehearse(
    settings: Settings,
    server: EmbeddedPostgres,
    revisions: list[Revision],
    start: str | None,
    recorded: tuple[str, ...] | None,
    server_major: int,
) -> Rehearsal:
    import psycopg2

    with _copy(server) as (name, url):
        from_target = recorded is not None and tuple(recorded) == ((start,) if start else ())
        if from_target:
            _restore_schema(settings, server, name, recorded or (), server_major)
            schema = "the target's schema (pg_dump --schema-only)"
        else:
            if start is not None:
                _upgrade(settings, url, start)
            schema = f"the migrations from base to {start or 'base'}"
        connection = server.connect(name)
        try:
            connection.autocommit = True
            version = _server_version(connection)
            result = Rehearsal(f"PostgreSQL {version} (embedded)", schema)
            for revision in revisions:
                try:
                    result.revisions[revision.revision] = _run(settings, url, connection, revision)
                except (psycopg2.Error, KubemigrateError) as exc:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                    result.failed = (revision.revision, first)
                    break
        finally:
            connection.close()
        if result.failed is None:
            from kubemigrate.migrations.commands import check_verdict

            result.check = check_verdict(_on_copy(settings, url))
    return result


def _run(settings: Settings, url: str, connection: Any, revision: Revision) -> list[Statement]:
    """Run one revision's statements as its offline SQL has them: in the transactions its BEGIN
    and COMMIT open and close (one around them all when it has none, as Alembic runs a
    migration online), and what comes between a COMMIT and the next BEGIN (an autocommit block,
    for `CONCURRENTLY`) on its own, unmeasured."""
    import psycopg2

    if revision.statements is None:
        _upgrade(settings, url, revision.revision)
        return []
    statements = revision.statements
    if not any(_is(statement, "BEGIN") for statement in statements):
        statements = ["BEGIN", *statements, "COMMIT"]
    done = []
    existing: dict[int, tuple[str, int]] | None = None  # None: outside a transaction
    with connection.cursor() as cursor:
        try:
            for statement in statements:
                if _is(statement, "BEGIN"):
                    cursor.execute("BEGIN")
                    existing = relations(cursor)  # locks on what it creates do not matter
                elif _is(statement, "COMMIT"):
                    cursor.execute("COMMIT")
                    existing = None
                elif existing is None:
                    cursor.execute(statement)
                    done.append(Statement(statement, measured=False))
                else:
                    done.append(measured(cursor, statement, existing))
            if existing is not None:
                cursor.execute("COMMIT")
        except BaseException:
            with suppress(psycopg2.Error):
                cursor.execute("ROLLBACK")
            raise
    return done


def _is(statement: str, keyword: str) -> bool:
    return statement.strip().rstrip(";").strip().upper() == keyword


def measured(cursor: Any, statement: str, existing: dict[int, tuple[str, int]]) -> Statement:
    """Run `statement`; on each table that existed before the revision began, the strongest
    lock it took itself and the strongest the revision held already, and the tables it
    rewrote."""
    names = {oid: name for oid, (name, _) in existing.items()}
    before, held = relations(cursor), _held(cursor, names)
    cursor.execute(statement)
    after, now = relations(cursor), _held(cursor, names)
    took = {
        table: strongest(list(modes - held.get(table, set())))
        for table, modes in sorted(now.items())
        if modes - held.get(table, set())
    }
    rewrites = sorted(
        name
        for oid, (name, node) in before.items()
        if oid in existing and oid in after and after[oid][1] != node
    )
    already = {table: strongest(list(modes)) for table, modes in sorted(held.items())}
    return Statement(statement, took, already, rewrites)


def _held(cursor: Any, names: dict[int, str]) -> dict[str, set[str]]:
    """The lock modes this session holds on each of the tables `names` names."""
    cursor.execute(HELD)
    held: dict[str, set[str]] = {}
    for relation, mode in cursor.fetchall():
        if relation in names and mode_name(mode) in MODES:  # not SERIALIZABLE's SIReadLock
            held.setdefault(names[relation], set()).add(mode_name(mode))
    return held


def relations(cursor: Any) -> dict[int, tuple[str, int]]:
    cursor.execute(USER_RELATIONS)
    return {int(oid): (name, int(node)) for oid, name, node in cursor.fetchall()}


def _server_version(connection: Any) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return str(cursor.fetchone()[0]).split()[0]


@contextmanager
def _copy(server: EmbeddedPostgres) -> Iterator[tuple[str, str]]:
    """A new, empty database on the embedded server (its name and URL), dropped on the way out."""
    from psycopg2 import sql

    name = f"kubemigrate_rehearsal_{secrets.token_hex(6)}"
    admin = server.connect()
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield name, server.url(name)
        finally:
            with admin.cursor() as cursor:
                cursor.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
    finally:
        admin.close()


def _restore_schema(
    settings: Settings,
    server: EmbeddedPostgres,
    name: str,
    recorded: tuple[str, ...],
    server_major: int,
) -> None:
    """The target's schema, dumped where backups dump it (with a pg_dump for `server_major`),
    restored into the copy `name`; the target's revision recorded in the copy's
    alembic_version."""
    from kubemigrate.errors import BackupError
    from kubemigrate.files import private_file
    from kubemigrate.postgres.clients import Client, client
    from kubemigrate.postgres.urls import parse_url
    from kubemigrate.target.database import database

    db = database(settings)
    where, _ = client(settings, db, server_major)
    with tempfile.TemporaryDirectory(prefix="kubemigrate-rehearsal-") as scratch:
        dump = Path(scratch) / "schema.dump"
        try:
            with private_file(dump) as out:

                def sink(chunk: bytes) -> None:
                    out.write(chunk)

                where.run(
                    "pg_dump",
                    "--format=custom",
                    "--schema-only",
                    "--no-publications",
                    "--no-subscriptions",
                    sink=sink,
                )
            copy = parse_url(server.url(name), "the rehearsal's copy")
            Client(copy, binaries=server.programs).run(
                "pg_restore",
                "--no-owner",
                "--no-privileges",
                "--no-tablespaces",
                "--dbname",
                name,
                input_file=dump,
            )
        except BackupError as exc:
            raise MigrationError(
                f"cannot copy the target's schema for the rehearsal: {exc}"
            ) from None
    connection = server.connect(name)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('alembic_version') IS NOT NULL")
            if cursor.fetchone()[0]:
                cursor.executemany(
                    "INSERT INTO alembic_version (version_num) VALUES (%s)",
                    [(revision,) for revision in recorded],
                )
    finally:
        connection.close()


def _upgrade(settings: Settings, url: str, revision: str) -> None:
    """Alembic's upgrade to `revision` on the copy, through the project's env.py."""
    from kubemigrate.migrations import commands

    commands.upgrade(_on_copy(settings, url), revision)


def _on_copy(settings: Settings, url: str) -> Settings:
    """The settings with the copy as their database (an environment of its own, so that the
    invocation's session never hands the copy out for the target)."""
    return dataclasses.replace(
        settings,
        environment=f"{settings.environment}-rehearsal",
        target="local",
        database_url=url,
        protected=False,
        runner="local",
    )
