"""Faults in the project's own files, and a task killed outright, through the real tasks.

- A broken revision file runs through every task of the namespace (a new task is in the list by
  default): one that does not parse through all, and through the tasks that read the graph in
  each way, one whose down_revision names no revision and one that states no revision id. Each
  ends with exit 1 and one `error:` line, the last, naming the file, or (a task that reads no
  revision file) succeeds; never a traceback, never a password, and the database keeps its
  revision.
- Revision messages of any text give a file that parses and reads back as the message.
- A task killed with SIGKILL in the middle of a migration statement: the next upgrade gets its
  locks at once, on the connection kubemigrate hands to env.py and on a project's own env.py's
  (client_connection_check_interval ends the orphaned statement).
"""

from __future__ import annotations

import ast
import os
import signal
import time

import pytest

from kubemigrate.tasks import namespace
from tests.conftest import ENV_PY_FORMS, PASSWORD, Project, Result, Server

pytestmark = pytest.mark.e2e

HEAD = "f2030d31309f"
# Arguments a task needs; any other task runs without (a new task with a required argument
# fails this module until it is given one here).
ARGUMENTS = {
    "db.show": ["head"],
    "db.downgrade": ["-1"],
    "db.stamp": ["head"],
    "db.revision": ["a change"],
    "db.restore": ["no-such.dump", "--yes"],
    "db.repair": ["f2030d31309f", "--reason", "a broken file beside it"],
}
# Tasks that need a Kubernetes cluster before anything else (tests/test_k8s_*.py run them).
NEEDS_A_CLUSTER = {"db.job", "db.jobs"}
# Tasks that never read a revision file: they may succeed with a broken one.
READ_NO_REVISION_FILE = {
    "backup",
    "db.backup",
    "db.backups",
    "db.init",
    "db.job-manifest",
    "db.restore",
    "dev.db",
}
BROKEN = {
    "syntax": (
        '"""broken"""\nrevision = "bad000000001"\ndown_revision = "f2030d31309f"\n\n'
        "def upgrade(:\n    pass\n",
        ":5: SyntaxError",
    ),
    "unknown-parent": (
        '"""broken"""\nrevision = "bad000000001"\ndown_revision = "cafecafecafe"\n\n'
        "def upgrade():\n    pass\n",
        "down_revision 'cafecafecafe' names no revision",
    ),
    "no-id": (
        '"""broken"""\ndown_revision = "f2030d31309f"\n\ndef upgrade():\n    pass\n',
        "states no revision id",
    ),
}
BROKEN_FILE = "20990101_0000_broken.py"
# Every task meets the first kind; the others go through the tasks that read the graph in each
# way (ast, Alembic in this process, Alembic with env.py), to keep the module fast.
OTHER_KINDS_TASKS = {"db.current", "db.history", "db.upgrade", "db.plan", "db.revision"}


def one_error_line(result: Result) -> str:
    """The one `error:` line, which must be the last line of stderr; no traceback, no password."""
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert "Traceback" not in result.output and PASSWORD not in result.output, result.output
    return errors[0]


def stamp(server: Server, database: str) -> None:
    """Record HEAD as the database's revision, as an upgrade would (without its tables: the
    tasks meet the broken file before they would look at them)."""
    server.execute(
        "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); "
        f"INSERT INTO alembic_version VALUES ('{HEAD}'); "
        "ALTER TABLE alembic_version OWNER TO km_app",
        database=database,
    )


def revision_of(server: Server, database: str) -> object:
    return server.execute("SELECT version_num FROM alembic_version", database=database)[0][0]


@pytest.mark.parametrize("task", sorted(set(namespace.task_names) - NEEDS_A_CLUSTER))
def test_a_broken_revision_file_through_every_task(
    project: Project, pg_server: Server, database: str, task: str
) -> None:
    stamp(pg_server, database)
    before = sorted(path.name for path in project.versions.iterdir())
    kinds = list(BROKEN) if task in OTHER_KINDS_TASKS else ["syntax"]
    for kind in kinds:
        text, said = BROKEN[kind]
        (project.versions / BROKEN_FILE).write_text(text)
        result = project.inv(task, *ARGUMENTS.get(task, []))
        if result.code == 0:
            assert task in READ_NO_REVISION_FILE, f"{task} ran with a broken revision ({kind})"
        else:
            assert result.code == 1, result.output
            line = one_error_line(result)
            if task not in READ_NO_REVISION_FILE:
                assert BROKEN_FILE in line and said in line, (kind, line)
        (project.versions / BROKEN_FILE).unlink()
        assert sorted(path.name for path in project.versions.iterdir()) == before, kind
        assert revision_of(pg_server, database) == HEAD, kind


MESSAGES = [
    'say "hi", back\\slash \\n not a line break',
    '"""triple quotes"""',
    "two\nlines, ünïcode ✓",
    'ends with a quote "',
]


def test_revision_messages_of_any_text_give_files_that_parse(project: Project) -> None:
    for message in MESSAGES:
        written = project.inv("db.revision", message, "--no-autogenerate")
        assert written.code == 0, written.output
    docs = []
    for path in project.versions.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs.append((ast.get_docstring(tree, clean=False) or "").split("\n\nRevision ID")[0])
    assert set(MESSAGES) <= set(docs), docs
    listed = project.inv("db.history")
    assert listed.code == 0 and '"""triple quotes"""' in listed.stdout, listed.output
    refused = project.inv("db.revision", "a\x07bell", "--no-autogenerate")
    assert refused.code == 1 and "control characters" in one_error_line(refused)


@pytest.mark.parametrize("env_py", ENV_PY_FORMS)
def test_after_a_sigkill_the_next_upgrade_gets_its_locks_at_once(
    project: Project, env_py: str
) -> None:
    if env_py == "own":
        project.use_own_env_py()
    assert project.inv("db.upgrade").code == 0
    slow = "5105105105ab"
    project.add_revision(
        slow,
        HEAD,
        'op.execute("ALTER TABLE book ADD COLUMN isbn text")',
        'op.execute("SELECT pg_sleep(60)")',
    )
    proc = project.popen("db.upgrade")
    try:
        assert proc.stderr is not None
        seen = ""
        while f"-> {slow}" not in seen:
            line = proc.stderr.readline()
            assert line, seen
            seen += line
        time.sleep(0.5)  # the migration sleeps, holding ACCESS EXCLUSIVE on book
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # The same change without the sleep: it needs book's lock, which the orphan held.
    project.add_revision(slow, HEAD, 'op.execute("ALTER TABLE book ADD COLUMN isbn text")')
    started = time.monotonic()
    again = project.inv("db.upgrade", KUBEMIGRATE_LOCK_TIMEOUT="3")
    assert again.code == 0, again.output
    assert time.monotonic() - started < 10, "the next upgrade waited for the orphan"


def test_the_dead_client_check_is_set_on_every_migration_session(
    project: Project, pg_server: Server, database: str
) -> None:
    """In-process too (the child's sessions: tests/test_drivers.py)."""
    project.add_revision(
        "5e5510a00001",
        HEAD,
        'op.execute("CREATE TABLE seen AS SELECT '
        "current_setting('client_connection_check_interval') AS interval\")",
    )
    assert project.inv("db.upgrade").code == 0
    assert pg_server.execute("SELECT interval FROM seen", database=database) == [("1s",)]


def test_two_heads_advise_the_merge_and_the_advice_works(project: Project) -> None:
    assert project.inv("db.upgrade").code == 0
    project.branch_revision("aaaa00000001", HEAD)
    project.branch_revision("bbbb00000001", HEAD)
    refused = project.inv("db.revision", "a change")
    assert refused.code == 1
    line = one_error_line(refused)
    assert "merge the heads with `inv db.merge`, then run `inv db.upgrade`" in line, line
    verified = project.inv("db.verify")
    assert verified.code == 1 and "inv db.merge" in verified.stdout, verified.output
    for step in (["db.merge", "-m", "join"], ["db.upgrade"], ["db.revision", "a change"]):
        done = project.inv(*step)
        assert done.code == 0, (step, done.output)
