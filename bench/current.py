"""7. Showing the current revision (database at head): `inv db.current` against the bare
`alembic current` of the same project and database (target: at most 0.6x, since the task
reads the revision with plain SQL and marks heads from the script directory without running
env.py)."""

from bench.timing import BIN, Result, alternate, command, scratch


def measure(repetitions: int) -> list[Result]:
    with scratch() as project:
        command(project.inv("db.upgrade"), project.root, project.env)()
        ours, bare = alternate(
            command(project.inv("db.current"), project.root, project.env),
            command([str(BIN / "alembic"), "current"], project.root, project.env),
            repetitions,
        )
    return [
        Result("current revision: `inv db.current` vs `alembic current`", ours, bare, "<= 0.6x")
    ]
