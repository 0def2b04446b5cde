"""Backups, restores and verification on a directly reached database (the local pg_dump from
pgserver), end to end through the tasks. The k8s variants (pg_dump in the pod through kubectl
exec) are in tests/test_k8s_release.py."""

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PASSWORD, Project, Server, interrupt_while_locked

pytestmark = pytest.mark.e2e


def seed(server: Server, database: str, users: int = 50) -> None:
    server.execute(
        'INSERT INTO "user" (email, name, created_at) '
        "SELECT 'u' || i || '@example.com', 'user ' || i, now() FROM generate_series(1, %s) i",
        (users,),
        database=database,
    )
    server.execute(
        "INSERT INTO book (title, author, owner_id) SELECT 't', 'a', id FROM \"user\"",
        database=database,
    )


def counts(server: Server, database: str) -> tuple[object, ...]:
    return server.execute(
        'SELECT (SELECT count(*) FROM "user"), (SELECT count(*) FROM book)', database=database
    )[0]


def dumps(project: Project) -> list[Path]:
    directory = project.root / "backups" / "local"
    return sorted(directory.glob("*")) if directory.exists() else []


def test_backup_restore_round_trip(project: Project, pg_server: Server, database: str) -> None:
    assert project.inv("db.upgrade").code == 0
    seed(pg_server, database)
    before = counts(pg_server, database)

    made = project.inv("backup")  # the short top-level name
    assert made.code == 0, made.output
    assert PASSWORD not in made.output
    dump = Path(made.stdout.strip())
    assert dump.parent == project.root / "backups" / "local"
    sidecar = json.loads(dump.with_suffix(".json").read_text())
    assert sidecar["database"] == database and sidecar["environment"] == "local"
    assert sidecar["size"] == dump.stat().st_size and len(sidecar["sha256"]) == 64
    (version,) = pg_server.execute("SHOW server_version")[0]
    assert sidecar["revision"] in dump.name and sidecar["server_version"] == version
    assert "pg_dump" in sidecar["dumped_by"]
    assert PASSWORD not in dump.with_suffix(".json").read_text()

    pg_server.execute("DELETE FROM book", database=database)
    pg_server.execute('DELETE FROM "user" WHERE id > 10', database=database)
    assert counts(pg_server, database) != before

    restored = project.inv("db.restore", str(dump), "--yes")
    assert restored.code == 0, restored.output
    assert "the database is at revision" in restored.stdout
    assert counts(pg_server, database) == before

    listing = project.inv("db.backups")
    assert dump.name in listing.stdout and sidecar["revision"] in listing.stdout


def test_restore_refuses_bad_files(project: Project, pg_server: Server, database: str) -> None:
    assert project.inv("db.upgrade").code == 0
    seed(pg_server, database, users=5)
    dump = Path(project.inv("db.backup").stdout.strip())
    before = counts(pg_server, database)

    corrupt = dump.with_name("corrupt.dump")
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    corrupt.with_suffix(".json").write_text(dump.with_suffix(".json").read_text())
    result = project.inv("db.restore", str(corrupt), "--yes")
    assert result.code == 1 and "does not match its sidecar" in result.stderr, result.output

    empty = dump.with_name("empty.dump")
    empty.write_bytes(b"")
    assert "no sidecar" in project.inv("db.restore", str(empty), "--yes").stderr

    missing = project.inv("db.restore", str(dump.with_name("nope.dump")), "--yes")
    assert "no backup file" in missing.stderr

    no_tty = project.inv("db.restore", str(dump))
    assert no_tty.code == 1 and "pass --yes" in no_tty.stderr
    assert counts(pg_server, database) == before


def test_restore_refuses_a_backup_of_another_database(
    project: Project, pg_server: Server, database: str
) -> None:
    assert project.inv("db.upgrade").code == 0
    dump = Path(project.inv("db.backup").stdout.strip())
    sidecar = dump.with_suffix(".json")
    sidecar.write_text(sidecar.read_text().replace(f'"{database}"', '"billing"'))
    result = project.inv("db.restore", str(dump), "--yes")
    assert result.code == 1 and "backup of database 'billing'" in result.stderr
    assert project.inv("db.restore", str(dump), "--yes", "--force").code == 0


def test_retention_keeps_the_newest_and_only_touches_its_own(project: Project) -> None:
    assert project.inv("db.upgrade").code == 0
    foreign = project.root / "backups" / "local"
    foreign.mkdir(parents=True)
    (foreign / "app_manual.dump").write_text("not ours")
    made = [
        Path(project.inv("db.backup", KUBEMIGRATE_BACKUP_KEEP="2").stdout.strip()) for _ in range(3)
    ]
    left = sorted(p.name for p in foreign.glob("*.dump"))
    assert left == sorted(["app_manual.dump", made[1].name, made[2].name])
    assert not made[0].with_suffix(".json").exists()


@pytest.mark.parametrize(("how", "code"), [("SIGINT", 130), ("SIGTERM", 143), ("kill pg_dump", 1)])
def test_a_dump_stopped_midway_leaves_no_backup(
    project: Project, database_url: str, how: str, code: int
) -> None:
    assert project.inv("db.upgrade").code == 0

    def act(task: subprocess.Popen[str], dumper: int) -> None:
        partials = list((project.root / "backups" / "local").glob(".*.partial"))
        assert partials, "the dump should be in progress under a temporary name"
        if how == "kill pg_dump":
            os.kill(dumper, signal.SIGKILL)
        else:
            task.send_signal(getattr(signal, how))

    result, left = interrupt_while_locked(project, database_url, "pg_dump", act, "db.backup")
    assert result.code == code, result.output
    assert "Traceback" not in result.stderr
    assert "pg_dump" in result.stderr if how == "kill pg_dump" else "interrupted" in result.stderr
    assert dumps(project) == [], dumps(project)
    assert left == set()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_restore_changes_nothing(
    project: Project, pg_server: Server, database: str, database_url: str, sig: int, code: int
) -> None:
    assert project.inv("db.upgrade").code == 0
    seed(pg_server, database, users=7)
    dump = Path(project.inv("db.backup").stdout.strip())
    pg_server.execute("DELETE FROM book WHERE id > 3", database=database)
    before = counts(pg_server, database)

    def act(task: subprocess.Popen[str], restorer: int) -> None:
        time.sleep(0.3)  # pg_restore --clean is now waiting to drop the locked table
        task.send_signal(sig)

    result, left = interrupt_while_locked(
        project, database_url, "pg_restore", act, "db.restore", str(dump), "--yes"
    )
    assert result.code == code, result.output
    assert "interrupted" in result.stderr and "Traceback" not in result.stderr
    assert left == set()
    assert counts(pg_server, database) == before  # one transaction: all or nothing


def test_verify_passes_then_fails_each_check(
    project: Project, pg_server: Server, database: str
) -> None:
    assert project.inv("db.upgrade").code == 0
    ok = project.inv("db.verify")
    assert ok.code == 0, ok.output
    for name in ("reachable", "single head", "at head", "models match"):
        assert f"{name}" in ok.stdout
    data = json.loads(project.inv("verify", "--json").stdout)
    assert data["passed"] is True and {c["result"] for c in data["checks"]} == {"ok"}

    assert project.inv("db.downgrade", "-1").code == 0
    behind = json.loads(project.inv("db.verify", "--json").stdout)
    assert behind["passed"] is False
    results = {c["name"]: c["result"] for c in behind["checks"]}
    assert results["at head"] == "FAIL" and results["models match"] == "skip"

    down = project.inv(
        "db.verify", DATABASE_URL=pg_server.url(database).replace(f":{pg_server.port}/", ":9/")
    )
    assert down.code == 1 and "error: verification failed: reachable" in down.stderr
    assert PASSWORD not in down.output

    head = project.inv("db.heads").stdout.split()[0]
    project.branch_revision("cccccccccccc", head)
    project.branch_revision("dddddddddddd", head)
    heads = json.loads(project.inv("db.verify", "--json").stdout)
    assert {c["name"]: c["result"] for c in heads["checks"]}["single head"] == "FAIL"


def test_verify_reports_model_drift(project: Project, pg_server: Server, database: str) -> None:
    assert project.inv("db.upgrade").code == 0
    pg_server.execute("ALTER TABLE book DROP COLUMN author", database=database)
    result = project.inv("db.verify", "--json")
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["models match"]["result"] == "FAIL"
    assert "author" in checks["models match"]["detail"]


def test_progress_line_on_terminals_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from kubemigrate.release import backups

    meter = backups.Progress(enabled=True)
    meter.add(2_500_000)
    shown = capsys.readouterr().err
    assert "2.5 MB" in shown and "/s" in shown
    monkeypatch.setenv("CI", "true")
    assert backups.show_progress() is False
    quiet = backups.Progress(enabled=False)
    quiet.add(10)
    assert capsys.readouterr().err == ""


def backup_in_process(project: Project, database_url: str, run: Callable[..., Any]) -> Path:
    """`db.backup` called in this process, with pg_dump started through `run(real, self, ...)`
    so that a test can act while the backup is under way; the dump's path."""
    from kubemigrate.postgres.clients import Client
    from kubemigrate.release import backups
    from kubemigrate.settings.sources import load_settings
    from kubemigrate.target import database

    real = Client.run
    settings = load_settings(project_dir=project.root, environ={"DATABASE_URL": database_url})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Client, "run", lambda self, *a, **kw: run(real, self, *a, **kw))
        try:
            record = backups.backup(settings, progress=False)
        finally:
            database.close_session()
    return project.root / "backups" / "local" / record.file


def dumped_revision(dump: Path) -> str:
    """The version_num row in the dump's alembic_version table."""
    from kubemigrate.postgres.binaries import program

    script = subprocess.run(
        [program("pg_restore"), "--data-only", "--table=alembic_version", "-f", "-", str(dump)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = script.split("COPY public.alembic_version (version_num) FROM stdin;\n", 1)[1]
    return rows.split("\n", 1)[0]


def test_the_backup_records_the_revision_it_dumped(
    project: Project, pg_server: Server, database: str, database_url: str
) -> None:
    """A migration that commits between the revision query and pg_dump's start does not make
    the sidecar lie: pg_dump dumps the snapshot the revision was read in."""
    assert project.inv("db.upgrade").code == 0
    head = project.head()

    def migrate_first(real: Callable[..., Any], client: Any, *args: Any, **kwargs: Any) -> Any:
        pg_server.execute("UPDATE alembic_version SET version_num = 'later'", database=database)
        return real(client, *args, **kwargs)

    dump = backup_in_process(project, database_url, migrate_first)
    assert json.loads(dump.with_suffix(".json").read_text())["revision"] == head
    assert head in dump.name and dumped_revision(dump) == head


def test_losing_the_snapshot_connection_mid_dump_keeps_the_backup(
    project: Project, pg_server: Server, database: str, database_url: str
) -> None:
    """The transaction that exported the snapshot is only needed until pg_dump has imported
    it: a connection dropped later (an idle timeout during a long dump) fails nothing."""
    assert project.inv("db.upgrade").code == 0
    seed(pg_server, database)
    killed: list[object] = []

    def drop_snapshot_connection(sink: Callable[[bytes], None]) -> Callable[[bytes], None]:
        def first_chunk_kills(chunk: bytes) -> None:
            if not killed:
                killed.extend(
                    pg_server.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND query LIKE %s",
                        (database, "%FROM alembic_version%"),  # the revision read in the snapshot
                    )
                )
            sink(chunk)

        return first_chunk_kills

    def run(real: Callable[..., Any], client: Any, *args: Any, **kwargs: Any) -> Any:
        if args[0] == "pg_dump":  # not the archive check's pg_restore
            kwargs = {**kwargs, "sink": drop_snapshot_connection(kwargs["sink"])}
        return real(client, *args, **kwargs)

    dump = backup_in_process(project, database_url, run)
    assert killed == [(True,)]
    assert dumped_revision(dump) == project.head()


def test_a_dump_newer_than_the_local_pg_restore_names_the_client_it_needs(
    project: Project, pg_server: Server, database: str
) -> None:
    assert project.inv("db.upgrade").code == 0
    dump = Path(project.inv("db.backup").stdout.strip())
    sidecar = dump.with_suffix(".json")
    record = json.loads(sidecar.read_text())
    record["dumped_by"] = "/opt/pg19/bin/pg_dump (pg_dump (PostgreSQL) 19.1)"
    sidecar.write_text(json.dumps(record))
    refused = project.inv("db.restore", str(dump), "--yes")
    assert refused.code == 1, refused.output
    (line,) = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert f"the pg_dump that wrote {dump.name} (PostgreSQL 19)" in line, line
    assert "postgresql-client-19" in line and "KUBEMIGRATE_POSTGRES_BIN" in line, line
    assert "Traceback" not in refused.output
