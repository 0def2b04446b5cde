"""6. Migration scaling: `inv db.upgrade` from base across N generated trivial revisions
against bare Alembic (target: the ratio does not grow with N)."""

from pathlib import Path

from bench.timing import BIN, Result, alternate, command, scratch

TRIVIAL = """revision = "{rev}"
down_revision = {down!r}
branch_labels = None
depends_on = None

from alembic import op


def upgrade() -> None:
    op.execute("SELECT 1")


def downgrade() -> None:
    op.execute("SELECT 1")
"""


def generate(versions: Path, count: int) -> None:
    """Replace the migrations with `count` trivial revisions in a line."""
    for old in versions.glob("*.py"):
        old.unlink()
    down = None
    for index in range(count):
        rev = f"{index:012x}"
        (versions / f"r{index:04d}.py").write_text(TRIVIAL.format(rev=rev, down=down))
        down = rev


def measure(repetitions: int, counts: tuple[int, ...] = (1, 10, 100, 500)) -> list[Result]:
    return [_upgrade_from_base(count, repetitions) for count in counts]


def _upgrade_from_base(count: int, repetitions: int) -> Result:
    with scratch() as project:
        generate(project.root / "migrations" / "versions", count)
        alembic = str(BIN / "alembic")
        reset = command([alembic, "downgrade", "base"], project.root, project.env)
        inv_upgrade = command(project.inv("db.upgrade"), project.root, project.env)
        bare_upgrade = command([alembic, "upgrade", "head"], project.root, project.env)

        mine, theirs = alternate(inv_upgrade, bare_upgrade, repetitions, before=reset)
    return Result(f"upgrade from base, {count} revision(s)", mine, theirs, "flat in N")
