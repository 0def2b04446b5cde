"""2. A no-op upgrade (database at head): `inv db.upgrade` against `alembic upgrade head` on the
same database (target: at most 0.5x: the
fast path reads the revision and the files, and starts no Alembic)."""

from bench.timing import BIN, Result, alternate, command, scratch


def measure(repetitions: int) -> list[Result]:
    with scratch() as project:
        command(project.inv("db.upgrade"), project.root, project.env)()
        ours, bare = alternate(
            command(project.inv("db.upgrade"), project.root, project.env),
            command([str(BIN / "alembic"), "upgrade", "head"], project.root, project.env),
            repetitions,
        )
    return [
        Result("no-op upgrade: `inv db.upgrade` vs `alembic upgrade head`", ours, bare, "<= 0.5x")
    ]
