"""Database URLs reach libpq's programs whole: every part and connection parameter of the URL
becomes the matching PG* variable of pg_dump's and pg_restore's environment (unit tests), and a
URL naming a socket directory in its query backs up and restores (end to end)."""

import pytest

from kubemigrate.errors import SettingsError
from kubemigrate.postgres.urls import libpq_environment, parse_url
from tests.conftest import Project, Server


def env_of(text: str) -> dict[str, str]:
    return libpq_environment(parse_url(text, "a test"))


def test_parts_become_variables() -> None:
    env = env_of("postgresql://ann:p%40ss@db.example:6543/shop")
    assert env["PGHOST"] == "db.example"
    assert env["PGPORT"] == "6543"
    assert env["PGUSER"] == "ann"
    assert env["PGPASSWORD"] == "p@ss"
    assert env["PGDATABASE"] == "shop"
    assert env["PGAPPNAME"] == "kubemigrate"


def test_socket_directory_in_the_query() -> None:
    env = env_of("postgresql://postgres:@/postgres?host=/some/socket/dir")
    assert env["PGHOST"] == "/some/socket/dir"
    assert env["PGDATABASE"] == "postgres"
    assert "PGPASSWORD" not in env and "PGPORT" not in env


def test_ssl_and_options_parameters() -> None:
    env = env_of(
        "postgresql://ann@db.example/shop?sslmode=verify-full&sslrootcert=/etc/ca.pem"
        "&sslcert=/etc/client.pem&sslkey=/etc/client.key&options=-c%20search_path%3Dshop"
        "&target_session_attrs=read-write"
    )
    assert env["PGSSLMODE"] == "verify-full"
    assert env["PGSSLROOTCERT"] == "/etc/ca.pem"
    assert env["PGSSLCERT"] == "/etc/client.pem"
    assert env["PGSSLKEY"] == "/etc/client.key"
    assert env["PGOPTIONS"] == "-c search_path=shop"
    assert env["PGTARGETSESSIONATTRS"] == "read-write"


def test_the_query_wins_over_the_parts_as_for_the_driver() -> None:
    assert env_of("postgresql://ann@db.example/shop?host=/run/pg")["PGHOST"] == "/run/pg"


def test_several_hosts() -> None:
    env = env_of("postgresql://ann@/shop?host=a.example&host=b.example")
    assert env["PGHOST"] == "a.example,b.example"


def test_a_parameter_libpq_does_not_know_is_refused_without_echoing_the_url() -> None:
    with pytest.raises(SettingsError, match="'frobnicate' is not a libpq connection parameter"):
        env_of("postgresql://ann:hunter2@db.example/shop?frobnicate=1")
    try:
        env_of("postgresql://ann:hunter2@db.example/shop?frobnicate=1")
    except SettingsError as exc:
        assert "hunter2" not in str(exc)


@pytest.mark.e2e
def test_backup_and_restore_over_a_socket_url(
    project: Project, pg_server: Server, database: str
) -> None:
    status = pg_server.embedded.status()
    assert status.socket_dir, "the test server listens on a Unix socket"
    project.env["DATABASE_URL"] = (
        f"postgresql://km_app:@/{database}?host={status.socket_dir}&port={status.port}"
    )
    assert project.inv("db.upgrade").code == 0
    made = project.inv("db.backup")
    assert made.code == 0, made.output
    dump = made.stdout.strip().splitlines()[-1]
    restored = project.inv("db.restore", dump, "--yes")
    assert restored.code == 0, restored.output


SAMPLES = [
    "postgresql://ann:p%40ss%3Aw%2Fo%25rd%20%27q%22%20%23x@db.example:6543/shop",
    "postgresql+psycopg2://ann@127.0.0.1/shop",
    "postgres://ann:@/shop?host=/run/postgresql&port=5433",
    "postgresql://ann:secret@[::1]:5432/shop?sslmode=verify-full&sslrootcert=/etc/ca.pem",
    "postgresql://ann@/shop?host=a.example&host=b.example",
    "postgresql://db.example/shop%20data",
    "postgresql://ann:se:cret@db.example/shop",
    "postgresql://",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_parsed_and_rendered_as_sqlalchemy_does(text: str) -> None:
    from sqlalchemy.engine import make_url

    ours = parse_url(text, "a test")
    theirs = make_url(text).set(drivername="postgresql+psycopg2")
    assert ours.sqlalchemy() == theirs
    for hide in (True, False):
        assert ours.render_as_string(hide) == theirs.render_as_string(hide)
    assert "secret" not in repr(ours) and "p@ss" not in repr(ours)


@pytest.mark.parametrize("text", ["not a url", "postgresql://ann@db:port/shop"])
def test_an_invalid_url_is_refused_without_echo(text: str) -> None:
    with pytest.raises(SettingsError, match="is not a valid URL") as caught:
        parse_url(text, "DATABASE_URL")
    assert text not in str(caught.value)


def test_another_database_is_refused() -> None:
    with pytest.raises(SettingsError, match="is for 'mysql'"):
        parse_url("mysql://ann@db/shop", "DATABASE_URL")
