"""Faults of the disk and of concurrency, through the tasks as users type them: a backup onto a
full or read-only file system, `db.init` where one of its files cannot be written, a malformed
backup sidecar, three tasks starting the stopped embedded PostgreSQL at once; and, in-process,
a failing write in the thread that relays a child's output.

Each failure must end within seconds with one `error:` line (the last line of stderr), exit
code 1, no traceback, no password, and nothing half-done: no partial or temporary file, no
pg_dump left running. Full and read-only file systems are small tmpfs mounts (root only: the
tests that need one are skipped elsewhere)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from kubemigrate.errors import KubemigrateError
from kubemigrate.postgres.embedded import EmbeddedPostgres
from kubemigrate.process import children, programs
from tests.conftest import NS, PASSWORD, REPO, ROLE, Project, Result, Server, pids_of, run

pytestmark = pytest.mark.e2e

HANG = 60  # a task still running after this long hangs: the test fails instead of blocking


# -- mounts --------------------------------------------------------------------------------------


def mount(*argv: str) -> None:
    done = subprocess.run(["mount", *argv], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise OSError(done.stderr.strip() or f"mount {' '.join(argv)} failed")


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Mounts a tmpfs of a given size (`make(size, at=None)`) and unmounts it at the end; skips
    the test where mounting is not permitted."""
    mounted: list[Path] = []

    def make(size: str, at: Path | None = None) -> Path:
        point = at or tmp_path / f"tmpfs{len(mounted)}"
        point.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a tmpfs needs root and mount(8)")
        try:
            mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point))
        except OSError as exc:
            pytest.skip(f"mounting a tmpfs is not permitted here: {exc}")
        mounted.append(point)
        return point

    try:
        yield make
    finally:
        for point in reversed(mounted):
            subprocess.run(["umount", str(point)], capture_output=True, timeout=30)
            if os.path.ismount(point):
                subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=30)


def read_only(point: Path) -> None:
    """Remount the tmpfs at `point` read-only."""
    mount("-o", "remount,ro", str(point))


def writable(point: Path) -> None:
    mount("-o", "remount,rw", str(point))


# -- helpers -------------------------------------------------------------------------------------


def inv(root: Path, *argv: str, **env: str) -> tuple[Result, float]:
    """`inv ARGV` in the project at `root`, with a bound: a hang fails the test (TimeoutExpired)
    instead of blocking it. The result and how long it took."""
    started = time.monotonic()
    result = run([sys.executable, "-m", "invoke", *argv], cwd=root, env=env, timeout=HANG)
    return result, time.monotonic() - started


def one_error_line(result: Result) -> str:
    """The failure's one line: exit code 1, the last line of stderr, the only `error:` line;
    no traceback, no password anywhere."""
    assert result.code == 1, result.output
    assert "Traceback" not in result.output and "Exception in thread" not in result.output
    assert PASSWORD not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert [line for line in lines if line.startswith("error:")] == [lines[-1]], result.stderr
    return lines[-1]


def dumping(database: str) -> set[int]:
    """The live pg_dump processes dumping `database` (told by the PGDATABASE in their
    environment: other test sessions on this machine may run pg_dump too), after a moment for
    one that is exiting."""
    deadline = time.monotonic() + 5
    while True:
        found = set()
        for pid in pids_of("pg_dump"):
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"PGDATABASE={database}".encode() in environ:
                found.add(pid)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def fill(server: Server, database: str, rows: int) -> None:
    """A table of `rows` rows of random hex (compresses poorly: ~35 bytes a row in a dump)."""
    server.execute(
        "CREATE TABLE filler AS SELECT md5(random()::text) || md5(random()::text) AS x "
        "FROM generate_series(1, %s)",
        (rows,),
        database=database,
    )
    server.execute(f"ALTER TABLE filler OWNER TO {ROLE}", database=database)


# -- backups onto a full or read-only file system ------------------------------------------------


@pytest.mark.parametrize(
    ("size", "rows"),
    [
        ("4k", 0),  # the .gitignore fills it: the first write of the dump fails
        ("64k", 0),  # a dump bigger than what is left, written in one piece at the end
        ("2m", 120_000),  # pg_dump mid-stream: its first 1 MB chunk fits, the next does not
    ],
)
def test_a_backup_onto_a_full_disk_fails_at_once(
    project: Project,
    pg_server: Server,
    database: str,
    tmpfs: Callable[..., Path],
    size: str,
    rows: int,
) -> None:
    disk = tmpfs(size)
    if rows:
        fill(pg_server, database, rows)
    else:
        pg_server.execute(
            "CREATE TABLE filler AS SELECT md5(i::text) AS x FROM generate_series(1, 10000) i",
            database=database,
        )
        pg_server.execute(f"ALTER TABLE filler OWNER TO {ROLE}", database=database)

    result, took = inv(
        project.root, "db.backup", **project.env, KUBEMIGRATE_BACKUP_DIR=str(disk / "backups")
    )

    line = one_error_line(result)
    assert line.startswith("error: cannot write the backup to "), line
    assert "the disk is full (No space left on device); nothing was kept" in line, line
    assert took < 20, f"the failing backup took {took:.1f}s"
    assert sorted(p.name for p in (disk / "backups" / "local").iterdir()) == []
    assert dumping(database) == set()


def test_a_backup_in_the_pod_onto_a_full_disk(
    k8s: Project, pg_server: Server, database: str, tmpfs: Callable[..., Path]
) -> None:
    """pg_dump in the pod, mid-stream through kubectl exec: stopped with its exec session."""
    disk = tmpfs("2m")
    fill(pg_server, database, 120_000)
    result, took = inv(k8s.root, "db.backup", "--env", NS, "--output", str(disk), **k8s.env)
    line = one_error_line(result)
    assert "the disk is full (No space left on device); nothing was kept" in line, line
    assert took < 30, f"the failing backup took {took:.1f}s"
    assert [p.name for p in (disk / NS).iterdir()] == [".gitignore"]  # the directory's own
    assert dumping(database) == set()


@pytest.fixture
def sealable(tmp_path: Path, tmpfs: Callable[..., Path]) -> Iterator[Path]:
    """A directory that `seal` can make read-only: as root a tmpfs (root writes through any
    mode), otherwise a plain directory (made writable again at the end)."""
    if os.geteuid() == 0:
        yield tmpfs("1m")
        return
    folder = tmp_path / "sealed"
    folder.mkdir()
    try:
        yield folder
    finally:
        for path in [folder, *folder.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)


def seal(directory: Path) -> str:
    """Make `directory` (a `sealable` one) and what is in it read-only; why a write there
    will fail."""
    if os.geteuid() == 0:
        read_only(directory)
        return "the file system is read-only (Read-only file system)"
    for path in [directory, *directory.rglob("*")]:
        path.chmod(0o555)
    return "the directory is not writable (Permission denied)"


@pytest.mark.parametrize("made", [True, False], ids=["directory exists", "directory to make"])
def test_a_backup_into_a_read_only_directory(project: Project, sealable: Path, made: bool) -> None:
    disk = sealable
    if made:
        (disk / "backups" / "local").mkdir(parents=True)
    why = seal(disk)

    result, _ = inv(
        project.root, "db.backup", **project.env, KUBEMIGRATE_BACKUP_DIR=str(disk / "backups")
    )

    line = one_error_line(result)
    assert line.startswith("error: cannot write the backup to "), line
    assert f"{why}; nothing was kept" in line, line
    found = sorted(str(p.relative_to(disk)) for p in disk.rglob("*"))
    assert found == (["backups", "backups/local"] if made else []), found


# -- db.init -------------------------------------------------------------------------------------


def test_init_writes_all_of_its_files_or_none(tmp_path: Path, tmpfs: Callable[..., Path]) -> None:
    """migrations/ is a read-only mount: alembic.ini and .env.example could be written, env.py
    cannot; nothing is left, and once the directory is writable the same command works."""
    root = tmp_path / "fresh"
    root.mkdir()
    shutil.copy(REPO / "tasks.py", root / "tasks.py")
    folder = tmpfs("1m", at=root / "migrations")
    read_only(folder)

    result, _ = inv(root, "db.init", "--models", "shop.models")

    line = one_error_line(result)
    assert line == (
        "error: cannot write migrations/env.py: the file system is read-only "
        "(Read-only file system); nothing was written"
    ), line
    left = sorted(p.name for p in root.iterdir() if p.name != "__pycache__")
    assert left == ["migrations", "tasks.py"], left
    assert list(folder.iterdir()) == []

    writable(folder)
    again, _ = inv(root, "db.init", "--models", "shop.models")
    assert again.code == 0, again.output
    assert (root / "alembic.ini").is_file() and (folder / "versions" / ".gitkeep").is_file()
    assert not [p for p in root.rglob("*.partial")]


# -- malformed sidecars --------------------------------------------------------------------------

GOOD = {
    "file": "app_20261124T143001.123Z_abc123.dump",
    "environment": "local",
    "database": "app",
    "server_version": "18.1",
    "revision": "abc123",
    "size": 4,
    "sha256": "a" * 64,
    "duration_seconds": 0.5,
    "created_at": "20261124T143001.123Z",
    "dumped_by": "pg_dump (PostgreSQL) 18.1",
    "tool": "kubemigrate",
}
MALFORMED = {
    "size_text": {**GOOD, "size": "four"},
    "no_digest": {k: v for k, v in GOOD.items() if k != "sha256"},
    "bad_stamp": {**GOOD, "created_at": "yesterday"},
    "a_list": [GOOD],
    "not_json": "{size: 4",
    "outside": {**GOOD, "file": "../../etc/passwd.dump"},
}


def test_a_revision_onto_a_full_disk_leaves_no_file(
    project: Project, tmpfs: Callable[..., Path]
) -> None:
    """Alembic writes a revision file under its final name: a failed write must not leave an
    empty one that every later task would trip over."""
    kept = {path.name: path.read_bytes() for path in project.versions.glob("*.py")}
    tmpfs("64k", at=project.versions)
    for name, data in kept.items():
        (project.versions / name).write_bytes(data)
    filler = project.versions / "filler.bin"
    with suppress(OSError), filler.open("wb") as out:
        while True:
            out.write(b"x" * 4096)
            out.flush()
    before = sorted(path.name for path in project.versions.iterdir())
    result, took = inv(project.root, "db.revision", "a change", "--no-autogenerate", **project.env)
    assert result.code == 1 and took < HANG, result.output
    line = one_error_line(result)
    assert "cannot write the revision file" in line and "the disk is full" in line, line
    assert sorted(path.name for path in project.versions.iterdir()) == before
    filler.unlink()
    written, _ = inv(project.root, "db.revision", "a change", "--no-autogenerate", **project.env)
    assert written.code == 0, written.output
    assert inv(project.root, "db.history", **project.env)[0].code == 0


def test_malformed_sidecars_are_listed_as_unreadable(project: Project) -> None:
    directory = project.root / "backups" / "local"
    directory.mkdir(parents=True)
    names = {}
    for number, (label, content) in enumerate({"good": GOOD, **MALFORMED}.items()):
        dump = directory / f"app_20261124T1430{number:02d}.123Z_{label}.dump"
        dump.write_bytes(b"data")
        text = content if isinstance(content, str) else json.dumps(content)
        dump.with_suffix(".json").write_text(text)
        names[label] = dump

    listing, _ = inv(project.root, "db.backups", **project.env)
    assert listing.code == 0, listing.output
    assert "Traceback" not in listing.output
    assert names["good"].name in listing.stdout
    for label in MALFORMED:
        (line,) = [x for x in listing.stderr.splitlines() if x.startswith(names[label].name)]
        assert "unreadable" in line, line
        assert names[label].name not in listing.stdout

    refused, _ = inv(project.root, "db.restore", str(names["size_text"]), "--yes", **project.env)
    line = one_error_line(refused)
    assert "is not a valid kubemigrate backup sidecar: size is 'four'" in line, line


# -- the embedded server, started by three tasks at once ---------------------------------------


def test_three_tasks_start_the_embedded_server_once(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    project = Project(tmp_path / "project")
    project.write_env("", KUBEMIGRATE_DATA_DIR="pgdata", KUBEMIGRATE_DB_NAME="sample")
    server = EmbeddedPostgres(project.root / "pgdata")
    try:
        for moment in ("created", "stopped"):
            tasks = [project.popen("db.current") for _ in range(3)]
            try:
                results = [task.communicate(timeout=HANG) for task in tasks]
            finally:
                for task in tasks:
                    if task.poll() is None:
                        task.kill()
                        task.wait()
            for task, (out, err) in zip(tasks, results, strict=True):
                assert task.returncode == 0, f"{moment}: {out}{err}"
                assert "Traceback" not in err
            port = server.status().port
            announced = {
                line for _, err in results for line in err.splitlines() if "started" in line
            }
            assert announced and all(f"127.0.0.1:{port}/sample" in line for line in announced)
            assert not (project.root / ".pgdata.initdb").exists()
            assert server.stop()
    finally:
        server.stop()


def test_a_failed_initdb_leaves_no_data_directory(
    tmp_path: Path, tmpfs: Callable[..., Path]
) -> None:
    """initdb onto a full disk fails with one line; nothing is left that a later run, with room
    enough, would refuse."""
    disk = tmpfs("1m")
    server = EmbeddedPostgres(disk / "pgdata")
    with pytest.raises(KubemigrateError) as failed:
        server.start()
    message = str(failed.value)
    assert "initdb failed" in message and "No space left on device" in message, message
    assert message.endswith("; nothing was kept") and "\n" not in message, message
    assert list(disk.iterdir()) == []
    mount("-o", "remount,size=200m", str(disk))  # room enough now
    try:
        assert server.start().running
    finally:
        server.stop()


def test_a_read_only_data_directory(tmp_path: Path, tmpfs: Callable[..., Path]) -> None:
    (tmp_path / "project").mkdir()
    project = Project(tmp_path / "project")
    disk = tmpfs("1m")
    read_only(disk)
    result, _ = inv(project.root, "db.current", KUBEMIGRATE_DATA_DIR=str(disk / "pgdata"))
    assert one_error_line(result) == (
        f"error: cannot create the embedded PostgreSQL's data directory {disk / 'pgdata'}: "
        "the file system is read-only (Read-only file system); nothing was kept"
    )


# -- in process: a failing write where a child's output is relayed -----------------------------

SH = programs.command("sh")
LOTS = "yes 0123456789abcdef | head -c 500000000"  # 500 MB: a blocked child would hang the test


def test_a_failing_sink_stops_the_child_and_reaches_the_caller() -> None:
    def full(_: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    started = time.monotonic()
    with pytest.raises(OSError) as failed:
        children.stream(SH, "-c", LOTS, sink=full)
    assert failed.value.errno == errno.ENOSPC
    assert time.monotonic() - started < 10


def test_a_failing_change_in_a_pipe_stops_both() -> None:
    def broken(_: bytes) -> bytes:
        raise ValueError("a bug in change")

    cat = programs.command("cat")
    started = time.monotonic()
    with pytest.raises(ValueError, match="a bug in change"):
        children.pipe((SH, ["-c", LOTS], {}), (cat, [], {}), change=broken)
    assert time.monotonic() - started < 10


def test_a_relayed_child_whose_output_cannot_be_written_is_stopped() -> None:
    """Standard output closed under a relayed child (`inv ... | head`): an error, no hang."""
    code = (
        "import os, sys\n"
        "from kubemigrate.process import children, programs\n"
        "r, w = os.pipe(); os.close(r); os.dup2(w, 1)\n"
        f"p, e = children.start_relayed(programs.command('sh'), '-c', {LOTS!r})\n"
        "try:\n"
        "    children.finished(p, e)\n"
        "except Exception as exc:\n"
        "    print(f'error: {exc}', file=sys.stderr)\n"
    )
    done = run([sys.executable, "-c", code], cwd=REPO, env={}, timeout=HANG)
    assert done.stderr.strip() == (
        "error: cannot pass on the output of sh: nothing reads it any more (Broken pipe); "
        "it was stopped"
    ), done.stderr
