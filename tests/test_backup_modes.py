"""A backup is the production database: only its owner may read it. The modes of what a
backup, a restore, a rehearsal and the embedded server create, under a permissive umask (0000)
and the usual one (0022), locally and through the Kubernetes test server; a backup other
accounts may write is refused by `db.restore`, one they may read is marked by `db.backups`."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from kubemigrate import files
from tests.conftest import NS, Project, Result, run

pytestmark = pytest.mark.e2e

UMASKS = [0o000, 0o022]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def inv_with_umask(project: Project, umask: int, *argv: str) -> Result:
    """`inv ARGV` as a user whose shell has `umask`."""
    script = f'umask {umask:03o}; exec {sys.executable} -m invoke "$@"'
    return run(["sh", "-c", script, "sh", *argv], cwd=project.root, env=project.env)


def backup_modes(project: Project, environment: str) -> dict[str, int]:
    """The modes of the backups tree and of every file in it, by path under the project."""
    root = project.root / "backups"
    found = {"backups": mode(root)}
    for path in root.rglob("*"):
        found[str(path.relative_to(project.root))] = mode(path)
    return found


def assert_private(modes: dict[str, int]) -> None:
    for name, bits in modes.items():
        if name.endswith(".gitignore"):
            continue
        expected = 0o600 if "." in Path(name).name else 0o700
        assert bits == expected, f"{name}: {oct(bits)} (expected {oct(expected)})"


@pytest.mark.parametrize("umask", UMASKS, ids=["umask-0000", "umask-0022"])
def test_a_local_backup_is_its_owners_alone(project: Project, umask: int) -> None:
    assert project.inv("db.upgrade").code == 0
    made = inv_with_umask(project, umask, "db.backup")
    assert made.code == 0, made.output
    modes = backup_modes(project, "local")
    assert any(name.endswith(".dump") for name in modes) and any(
        name.endswith(".json") for name in modes
    )
    assert_private(modes)
    assert not list((project.root / "backups").rglob("*.partial"))
    dump = next((project.root / "backups").rglob("*.dump"))
    restored = inv_with_umask(project, umask, "db.restore", str(dump), "--yes")
    assert restored.code == 0, restored.output
    assert backup_modes(project, "local") == modes  # a restore creates nothing beside them


@pytest.mark.parametrize("umask", UMASKS, ids=["umask-0000", "umask-0022"])
def test_a_backup_streamed_out_of_the_pod_is_its_owners_alone(k8s: Project, umask: int) -> None:
    assert k8s.inv("db.upgrade", "--env", NS).code == 0
    made = inv_with_umask(k8s, umask, "db.backup", "--env", NS)
    assert made.code == 0, made.output
    assert_private(backup_modes(k8s, NS))


def test_a_backup_others_may_write_is_refused_and_one_they_may_read_is_marked(
    project: Project,
) -> None:
    assert project.inv("db.upgrade").code == 0
    assert project.inv("db.backup").code == 0
    dump = next((project.root / "backups").rglob("*.dump"))
    sidecar = dump.with_suffix(".json")

    dump.chmod(0o644)  # as pg_dump itself leaves it under the usual umask
    listed = project.inv("db.backups")
    assert listed.code == 0, listed.output
    assert "(readable by others)" in listed.stdout
    assert f"chmod 600 {dump} {sidecar}" in listed.stderr

    sidecar.chmod(0o664)  # group-writable: someone could have swapped it
    refused = project.inv("db.restore", str(dump), "--yes")
    assert refused.code == 1
    (line,) = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert "can be written by other accounts (mode 664)" in line and "--force" in line
    forced = project.inv("db.restore", str(dump), "--yes", "--force")
    assert forced.code == 0, forced.output

    dump.chmod(0o600)
    sidecar.chmod(0o600)
    clean = project.inv("db.backups")
    assert "by others" not in clean.stdout and "chmod" not in clean.stderr


@pytest.mark.parametrize("umask", [0o000], ids=["umask-0000"])
def test_the_embedded_servers_files_are_its_owners_alone(tmp_path: Path, umask: int) -> None:
    (tmp_path / "project").mkdir()
    project = Project(tmp_path / "project")
    project.write_env("", KUBEMIGRATE_DATA_DIR="state/pgdata")
    try:
        started = inv_with_umask(project, umask, "db.upgrade")
        assert started.code == 0, started.output
        state = project.root / "state"
        # Under root the server runs as a user of its own, which must traverse the directory.
        assert mode(state) in ((0o701,) if os.geteuid() == 0 else (0o700,)), oct(mode(state))
        assert mode(state / "pgdata") == 0o700
        assert mode(state / "pgdata" / "server.log") == 0o600
    finally:
        project.inv("dev.db", "--stop")


# -- the parts, with fakes ------------------------------------------------------------------------


def test_a_private_file_and_directories_under_a_permissive_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        made = files.make_directories(tmp_path / "a" / "b", private=True)
        with files.private_file(tmp_path / "a" / "b" / "x") as out:
            assert mode(tmp_path / "a" / "b" / "x") == 0o600  # before a byte is written
            out.write(b"data")
        files.write_atomically(tmp_path / "a" / "y", b"data", private=True)
        files.write_atomically(tmp_path / "a" / "plain", b"data")
    finally:
        os.umask(previous)
    assert [mode(p) for p in made] == [0o700, 0o700]
    assert mode(tmp_path / "a" / "y") == 0o600
    assert mode(tmp_path / "a" / "plain") == 0o666  # what is not data keeps the umask's say


def test_the_rehearsals_schema_dump_is_private(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The schema dump the rehearsal restores into its copy, seen while pg_dump writes it."""
    from kubemigrate.postgres import clients, urls
    from kubemigrate.review import rehearsal
    from kubemigrate.target import database

    seen: list[tuple[int, int]] = []

    class Dumping:
        def run(self, program: str, *args: str, sink: Any = None, **kw: Any) -> None:
            sink(b"schema")
            (dump,) = Path(os.environ["TMPDIR"]).glob("kubemigrate-rehearsal-*/schema.dump")
            seen.append((mode(dump.parent), mode(dump)))

    class Restoring:
        def __init__(self, *args: Any, **kw: Any) -> None: ...

        def run(self, *args: Any, **kw: Any) -> None: ...

    class Server:
        programs = None

        def url(self, name: str) -> str:
            return f"postgresql://u@127.0.0.1/{name}"

        def connect(self, name: str) -> None:
            raise LookupError("enough")

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    monkeypatch.setattr(database, "database", lambda settings: object())
    monkeypatch.setattr(clients, "client", lambda *args: (Dumping(), ""))
    monkeypatch.setattr(clients, "Client", Restoring)
    monkeypatch.setattr(urls, "parse_url", lambda *args: None)
    previous = os.umask(0)
    try:
        with pytest.raises(LookupError):
            rehearsal._restore_schema(None, Server(), "copy", (), 18)  # type: ignore[arg-type]
    finally:
        os.umask(previous)
    assert seen == [(0o700, 0o600)]
