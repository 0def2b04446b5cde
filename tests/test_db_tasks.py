"""The db tasks end to end: `python -m invoke db.X` in a project copy, a real PostgreSQL, real
Alembic. Every test has its own database, reached with a password full of URL-breaking
characters, which must never be printed."""

import re
import shutil
import signal
import time

import pytest

from tests.conftest import (
    ENV_PY_FORMS,
    PASSWORD,
    ROLE,
    Project,
    Server,
    add_slow_revision,
    interrupt_during_slow_migration,
)

pytestmark = pytest.mark.e2e

HEAD = re.compile(r"^[0-9a-f]{12} \(head\)", re.MULTILINE)


def assert_clean_failure(result, *expected: str) -> None:
    """One readable line, a non-zero exit, no traceback, no password."""
    assert result.code != 0, result.output
    assert "Traceback" not in result.output, result.output
    assert PASSWORD not in result.output
    assert "p@ss" not in result.output
    for text in expected:
        assert text in result.output, result.output


def tables(server: Server, database: str) -> set[str]:
    rows = server.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'", database=database
    )
    return {str(row[0]) for row in rows}


def test_upgrade_current_downgrade(project: Project, pg_server: Server, database: str) -> None:
    result = project.inv("db.upgrade")
    assert result.code == 0, result.output
    assert "Running upgrade" in result.stderr
    assert {"alembic_version", "user", "book"} <= tables(pg_server, database)

    current = project.inv("db.current")
    assert HEAD.search(current.stdout), current.output

    down = project.inv("db.downgrade", "-1")
    assert down.code == 0, down.output
    assert tables(pg_server, database) == {"alembic_version", "kubemigrate_history"}
    assert project.inv("db.current").stdout.strip() == ""

    again = project.inv("migrate")  # the short top-level name
    assert again.code == 0, again.output
    assert HEAD.search(project.inv("db.current").stdout)
    for result in (current, down, again):
        assert PASSWORD not in result.output


def test_history_heads_show(project: Project) -> None:
    history = project.inv("db.history", "--verbose")
    assert history.code == 0, history.output
    assert "create user and book tables" in history.stdout
    heads = project.inv("db.heads")
    assert HEAD.search(heads.stdout), heads.output
    show = project.inv("db.show", "head")
    assert show.code == 0 and "Revision ID:" in show.stdout, show.output


def test_sql_output_is_clean_and_needs_no_database(project: Project) -> None:
    # A URL nobody listens on proves that no connection is attempted.
    result = project.inv("db.upgrade", "--sql", DATABASE_URL="postgresql://u:p@127.0.0.1:9/x")
    assert result.code == 0, result.output
    assert result.stdout.lstrip().startswith("BEGIN;"), result.stdout[:200]
    assert "CREATE TABLE" in result.stdout
    assert "INFO" not in result.stdout
    assert "Generating static SQL" in result.stderr
    stamp = project.inv("db.stamp", "head", "--sql")
    assert "INSERT INTO alembic_version" in stamp.stdout, stamp.output
    down = project.inv("db.downgrade", "head:base", "--sql")
    assert "DROP TABLE" in down.stdout, down.output
    relative = project.inv("db.downgrade", "-1", "--sql")
    assert_clean_failure(relative, "needs a range")


def test_password_as_separate_setting(project: Project, pg_server: Server, database: str) -> None:
    project.env.pop("DATABASE_URL")
    project.write_env(
        "",
        KUBEMIGRATE_DB_HOST="127.0.0.1",
        KUBEMIGRATE_DB_PORT=str(pg_server.port),
        KUBEMIGRATE_DB_USER=ROLE,
        KUBEMIGRATE_DB_PASSWORD=PASSWORD,
        KUBEMIGRATE_DB_NAME=database,
    )
    result = project.inv("db.upgrade")
    assert result.code == 0, result.output
    assert PASSWORD not in result.output
    assert "user" in tables(pg_server, database)


def test_env_option_picks_the_environment_file(
    project: Project, pg_server: Server, database: str
) -> None:
    project.env.pop("DATABASE_URL")
    project.write_env("staging", DATABASE_URL=pg_server.url(database))
    assert project.inv("db.upgrade", "--env", "staging").code == 0
    assert "user" in tables(pg_server, database)
    unknown = project.inv("db.upgrade", "--env", "prod")
    assert_clean_failure(unknown, "unknown environment 'prod'")


def test_stamp(project: Project) -> None:
    assert project.inv("db.upgrade").code == 0
    assert project.inv("db.stamp", "base").code == 0
    assert project.inv("db.current").stdout.strip() == ""


def test_unreachable_database(project: Project, pg_server: Server, database: str) -> None:
    url = pg_server.url(database).replace(f":{pg_server.port}/", ":9/")
    result = project.inv("db.upgrade", DATABASE_URL=url)
    assert_clean_failure(result, "error: cannot connect to", "127.0.0.1:9")


def test_wrong_password(project: Project, pg_server: Server, database: str) -> None:
    result = project.inv("db.current", DATABASE_URL=pg_server.url(database, password="nope:@%"))
    assert_clean_failure(result, "password authentication failed")
    assert "nope" not in result.output


def test_unknown_revision_and_below_base(project: Project) -> None:
    assert_clean_failure(project.inv("db.upgrade", "-r", "deadbeef"), "deadbeef", "inv db.history")
    assert_clean_failure(project.inv("db.downgrade", "-1"), "fewer migrations applied")


def test_missing_migrations_directory(project: Project) -> None:
    shutil.rmtree(project.root / "migrations")
    assert_clean_failure(project.inv("db.upgrade"), "no migrations directory")
    (project.root / "alembic.ini").unlink()
    assert_clean_failure(project.inv("db.history"), "no Alembic configuration")


def initial_revision(project: Project) -> str:
    match = HEAD.search(project.inv("db.heads").stdout)
    assert match
    return match.group(0).split()[0]


def test_multiple_heads_then_merge(project: Project) -> None:
    root = initial_revision(project)
    project.branch_revision("aaaaaaaaaaaa", root)
    project.branch_revision("bbbbbbbbbbbb", root)
    assert_clean_failure(project.inv("db.upgrade"), "several heads", "inv db.merge")

    merged = project.inv("db.merge", "-m", "join branches")
    assert merged.code == 0, merged.output
    heads = project.inv("db.heads").stdout.strip().splitlines()
    assert len(heads) == 1, heads
    assert project.inv("db.upgrade").code == 0
    assert HEAD.search(project.inv("db.current").stdout)
    assert_clean_failure(project.inv("db.merge"), "single head")


def test_revision_requires_head(project: Project) -> None:
    result = project.inv("db.revision", "too early")
    assert_clean_failure(result, "not at head", "inv db.upgrade")
    assert len(list(project.versions.glob("*.py"))) == 1


def test_empty_revision(project: Project) -> None:
    result = project.inv("db.revision", "data fix", "--no-autogenerate")
    assert result.code == 0, result.output
    (written,) = project.versions.glob("*data_fix.py")
    assert re.match(r"\d{8}_\d{4}_data_fix\.py", written.name)


@pytest.mark.parametrize("env_py", ENV_PY_FORMS)
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_rolls_back_the_running_migration(
    project: Project, pg_server: Server, database: str, sig: int, code: int, env_py: str
) -> None:
    if env_py == "own":
        project.use_own_env_py()
    parent = add_slow_revision(project)
    started = time.monotonic()
    result = interrupt_during_slow_migration(project, sig)
    assert time.monotonic() - started < 30  # the 60 s statement was cancelled, not awaited
    assert result.code == code, result.output
    assert "error: interrupted" in result.stderr
    assert "Traceback" not in result.output
    rows = pg_server.execute("SELECT version_num FROM alembic_version", database=database)
    assert rows == [(parent,)]
    assert "half_done" not in tables(pg_server, database)
    assert project.inv("db.upgrade", "-r", parent).code == 0


@pytest.mark.parametrize("env_py", ENV_PY_FORMS)
def test_concurrent_upgrades_apply_each_revision_once(
    project: Project, pg_server: Server, database: str, env_py: str
) -> None:
    if env_py == "own":
        project.use_own_env_py()
    parent = project.head()
    project.add_revision(  # slow enough for the four runs to overlap
        "c0c0c0c0c0c0",
        parent,
        'op.execute("SELECT pg_sleep(1.5)")',
        'op.execute("CREATE TABLE applied_once (id int)")',
    )
    procs = [project.popen("db.upgrade") for _ in range(4)]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out + err
    runs = sum(err.count("Running upgrade " + parent) for _, err in outputs)
    assert runs == 1, outputs
    assert any("Waiting for the migration lock held by pid" in err for _, err in outputs)
    rows = pg_server.execute("SELECT version_num FROM alembic_version", database=database)
    assert rows == [("c0c0c0c0c0c0",)]


def test_lock_wait_times_out_naming_the_holder(project: Project, database_url: str) -> None:
    import psycopg2

    from kubemigrate.postgres.locking import LOCK_KEY

    holder = psycopg2.connect(
        database_url.replace("+psycopg2", ""), application_name="someone-else"
    )
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        result = project.inv("db.upgrade", KUBEMIGRATE_LOCK_WAIT="1")
    finally:
        holder.close()
    assert result.code == 1, result.output
    assert "another migration holds the lock (pid" in result.stderr
    assert "someone-else" in result.stderr


@pytest.mark.parametrize("env_py", ENV_PY_FORMS)
def test_lock_timeout_stops_a_migration_behind_a_busy_table(
    project: Project, database_url: str, pg_server: Server, database: str, env_py: str
) -> None:
    import psycopg2

    if env_py == "own":
        project.use_own_env_py()
    assert project.inv("db.upgrade").code == 0
    parent = project.head()
    project.add_revision(
        "a1a1a1a1a1a1", parent, 'op.execute("ALTER TABLE book ADD COLUMN isbn text")'
    )
    app = psycopg2.connect(database_url.replace("+psycopg2", ""))
    try:
        with app.cursor() as cur:
            cur.execute("SELECT count(*) FROM book")  # holds ACCESS SHARE until rollback
            result = project.inv("db.upgrade", KUBEMIGRATE_LOCK_TIMEOUT="0.5")
    finally:
        app.rollback()
        app.close()
    assert result.code == 1, result.output
    assert "lock timeout" in result.stderr and "KUBEMIGRATE_LOCK_TIMEOUT" in result.stderr
    rows = pg_server.execute("SELECT version_num FROM alembic_version", database=database)
    assert rows == [(parent,)]


def test_current_heads_agrees_with_alembic(database_url: str) -> None:
    """The revision is read with plain SQL (backup and restore then need no Alembic import):
    it must say what Alembic's own MigrationContext says, before the table exists, while it is
    empty, and with two heads."""
    import sqlalchemy as sa
    from alembic.runtime.migration import MigrationContext

    from kubemigrate.migrations.recorder import current_heads

    def both(connection: sa.Connection) -> tuple[list[str], list[str]]:
        alembic = MigrationContext.configure(connection).get_current_heads()
        return sorted(current_heads(connection)), sorted(alembic)

    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            assert both(connection) == ([], [])
            connection.exec_driver_sql(
                "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)"
            )
            assert both(connection) == ([], [])
            connection.exec_driver_sql("INSERT INTO alembic_version VALUES ('aaa'), ('bbb')")
            assert both(connection) == (["aaa", "bbb"], ["aaa", "bbb"])
            connection.rollback()
    finally:
        engine.dispose()


def test_an_empty_revision_keeps_op_and_sa_imported(
    project: Project, pg_server: Server, database: str
) -> None:
    assert project.inv("db.upgrade").code == 0
    assert project.inv("db.revision", "data fix", "--no-autogenerate").code == 0
    (written,) = project.versions.glob("*data_fix.py")
    text = written.read_text()
    assert "from alembic import op" in text and "import sqlalchemy as sa" in text
    statement = '    op.execute(sa.text("CREATE TABLE fixed (id int)"))\n'
    written.write_text(
        text.replace('    """Upgrade schema."""\n', f'    """Upgrade schema."""\n{statement}')
    )
    upgraded = project.inv("db.upgrade")
    assert upgraded.code == 0, upgraded.output
    assert "fixed" in tables(pg_server, database)


@pytest.mark.parametrize("message", ["", "   "])
def test_a_revision_needs_a_message(project: Project, message: str) -> None:
    result = project.inv("db.revision", message, "--no-autogenerate")
    assert_clean_failure(result, "needs a message")
    assert len(list(project.versions.glob("*.py"))) == 1


def test_current_does_not_run_env_py(project: Project) -> None:
    assert project.inv("db.upgrade").code == 0
    env_py = project.root / "migrations" / "env.py"
    env_py.write_text('raise RuntimeError("env.py ran")\n' + env_py.read_text())
    result = project.inv("db.current")
    assert result.code == 0, result.output
    assert HEAD.search(result.stdout), result.output
    verbose = project.inv("db.current", "--verbose")
    assert verbose.code == 0, verbose.output
    assert "Current revision(s) for postgresql+psycopg2://km_app:***@" in verbose.stdout
    assert "Rev: " in verbose.stdout and "(head)" in verbose.stdout


def test_current_names_a_revision_the_migrations_do_not_have(
    project: Project, pg_server: Server, database: str
) -> None:
    assert project.inv("db.upgrade").code == 0
    pg_server.execute("UPDATE alembic_version SET version_num = 'feedfacecafe'", database=database)
    assert_clean_failure(project.inv("db.current"), "feedfacecafe")


def test_an_exception_in_env_py_is_one_line(project: Project) -> None:
    env_py = project.root / "migrations" / "env.py"
    # raised before it migrates: a second run still reaches env.py (no no-op fast path)
    env_py.write_text('raise RuntimeError("a broken env.py")\n' + env_py.read_text())
    line = 1
    failed = project.inv("db.upgrade")
    assert failed.code == 1, failed.output
    assert f"error: migrations/env.py:{line}: RuntimeError: a broken env.py" in failed.stderr
    assert "Traceback" not in failed.output
    shown = project.inv("--debug", "db.upgrade")
    assert "Traceback (most recent call last)" in shown.stderr
    assert PASSWORD not in shown.output


@pytest.mark.parametrize("env_py", ENV_PY_FORMS)
def test_statement_timeout_rolls_back_only_the_failed_migration(
    project: Project, pg_server: Server, database: str, env_py: str
) -> None:
    """Two pending migrations, the second too slow: the first stays applied (one transaction
    per migration, though the project's own env.py does not ask for it), the second is rolled
    back by statement_timeout, and the message says which setting to raise."""
    if env_py == "own":
        project.use_own_env_py()
    assert project.inv("db.upgrade").code == 0
    parent = project.head()
    project.add_revision("f1f1f1f1f1f1", parent, 'op.execute("CREATE TABLE kept (id int)")')
    project.add_revision(
        "f2f2f2f2f2f2",
        "f1f1f1f1f1f1",
        'op.execute("CREATE TABLE dropped (id int)")',
        'op.execute("SELECT pg_sleep(5)")',
    )
    result = project.inv("db.upgrade", KUBEMIGRATE_STATEMENT_TIMEOUT="1")
    assert result.code == 1, result.output
    assert "statement timeout" in result.stderr
    assert "KUBEMIGRATE_STATEMENT_TIMEOUT" in result.stderr
    assert "Traceback" not in result.output
    rows = pg_server.execute("SELECT version_num FROM alembic_version", database=database)
    assert rows == [("f1f1f1f1f1f1",)]
    assert "kept" in tables(pg_server, database) and "dropped" not in tables(pg_server, database)
