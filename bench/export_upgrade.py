"""The export mode: a project with its own env.py (FastAPI's layout, kubemigrate installed
from its wheel into the project's venv, tests/userproject.py). A no-op `inv db.upgrade`, which
runs that env.py in a child Alembic process, against the bare `alembic upgrade head` in
backend/ with the same database (target: at most 0.5x), for two of the project's forms: a sync
env.py on psycopg 3 reading DATABASE_URL, and an async one on asyncpg whose URL the
application's settings build from DATABASE_USER and friends (KUBEMIGRATE_EXPORT's parts)."""

import tempfile
from pathlib import Path

from tests.userproject import (
    ASYNC_EXPORT,
    DECOY,
    UserProject,
    build_wheel,
    make_venv,
    write_project,
)

from bench.timing import Result, alternate, command

INI = "backend/alembic.ini"


def measure(repetitions: int) -> list[Result]:
    from kubemigrate.postgres.embedded import EmbeddedPostgres
    from kubemigrate.postgres.urls import parse_url

    with tempfile.TemporaryDirectory(prefix="kubemigrate-bench-") as directory:
        scratch = Path(directory)
        python = make_venv(scratch / "venv", build_wheel(scratch / "dist"))
        server = EmbeddedPostgres(scratch / "pgdata")
        server.start()
        results = []
        try:
            for form, label in (("url", "psycopg 3"), ("async", "async, asyncpg")):
                project = UserProject(scratch / f"project-{form}", python)
                write_project(project.root, form=form, decoy=DECOY)
                server.ensure_database(f"bench_{form}")
                url = server.url(f"bench_{form}").replace("+psycopg2", "+psycopg", 1)
                ours = {"DATABASE_URL": url, "KUBEMIGRATE_MIGRATIONS_CONFIG": INI}
                bare = {"DATABASE_URL": url}
                if form == "async":
                    parts = parse_url(url, "the bench database")
                    ours["KUBEMIGRATE_EXPORT"] = ASYNC_EXPORT
                    bare = {
                        "DATABASE_USER": parts.username or "",
                        "DATABASE_PASSWORD": parts.password or "",
                        "DATABASE_HOST": parts.host or "",
                        "DATABASE_PORT": str(parts.port or 5432),
                        "DATABASE_NAME": parts.database or "",
                    }
                inv = [str(python), "-m", "invoke", "db.upgrade"]
                alembic = [str(python.parent / "alembic"), "upgrade", "head"]
                command(inv, project.root, project.environ(**ours))()
                timed = alternate(
                    command(inv, project.root, project.environ(**ours)),
                    command(alembic, project.backend, project.environ(**bare)),
                    repetitions,
                )
                results.append(
                    Result(
                        f"no-op upgrade, own env.py ({label}, export mode): `inv db.upgrade` vs "
                        "`alembic upgrade head`",
                        *timed,
                        "<= 0.5x",
                    )
                )
        finally:
            server.stop()
    return results
