"""The export mode: a project with its own env.py (FastAPI's layout, psycopg 3, kubemigrate
installed from its wheel into the project's venv, tests/userproject.py). A no-op
`inv db.upgrade`, which runs that env.py in a child Alembic process, against the bare
`alembic upgrade head` in backend/ with the same DATABASE_URL (target: at most 1.2x)."""

import tempfile
from pathlib import Path

from tests.userproject import DECOY, UserProject, build_wheel, make_venv, write_project

from bench.timing import Result, alternate, command


def measure(repetitions: int) -> list[Result]:
    from kubemigrate.embedded import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="kubemigrate-bench-") as directory:
        scratch = Path(directory)
        python = make_venv(scratch / "venv", build_wheel(scratch / "dist"))
        project = UserProject(scratch / "project", python)
        write_project(project.root, form="url", decoy=DECOY)
        server = EmbeddedPostgres(scratch / "pgdata")
        server.start()
        try:
            server.ensure_database("bench")
            url = server.url("bench").replace("+psycopg2", "+psycopg", 1)
            env = project.environ(
                DATABASE_URL=url, KUBEMIGRATE_MIGRATIONS_CONFIG="backend/alembic.ini"
            )
            inv = [str(python), "-m", "invoke", "db.upgrade"]
            command(inv, project.root, env)()
            ours, bare = alternate(
                command(inv, project.root, env),
                command([str(python.parent / "alembic"), "upgrade", "head"], project.backend, env),
                repetitions,
            )
        finally:
            server.stop()
    return [
        Result(
            "no-op upgrade, own env.py (export mode): `inv db.upgrade` vs `alembic upgrade head`",
            ours,
            bare,
            "<= 1.2x",
        )
    ]
