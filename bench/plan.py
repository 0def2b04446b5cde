"""The plan: `inv db.plan` on one revision of 200 statements (each read on PostgreSQL's parse
tree, squawk run on them, the database's tables read) against rendering the same revision's SQL
with `inv db.upgrade --sql` (target: at most 3x); and `inv db.plan` on seven pending revisions,
as a user's release has them, against the same rendering (reported)."""

from pathlib import Path

from bench.timing import Result, alternate, command, scratch

REVISION = """revision = "{rev}"
down_revision = {down!r}
branch_labels = None
depends_on = None

from alembic import op


def upgrade() -> None:
{body}


def downgrade() -> None:
    pass
"""
# Ten kinds of statement, each repeated with its own column: 200 in all.
KINDS = (
    "ALTER TABLE book ADD COLUMN c{i} text DEFAULT 'x' NOT NULL",
    "CREATE INDEX ix_c{i} ON book (c{i})",
    "ALTER TABLE book ALTER COLUMN c{i} TYPE varchar(50)",
    "UPDATE book SET c{i} = 'y' WHERE id < 10",
    "ALTER TABLE book ADD CONSTRAINT k{i} CHECK (c{i} IS NOT NULL) NOT VALID",
    "ALTER TABLE book VALIDATE CONSTRAINT k{i}",
    "ALTER TABLE book ALTER COLUMN c{i} SET NOT NULL",
    "ALTER TABLE book ALTER COLUMN c{i} TYPE text",
    "COMMENT ON COLUMN book.c{i} IS 'bench'",
    "ALTER TABLE book ALTER COLUMN c{i} SET DEFAULT 'z'",
)


def statements(count: int) -> list[str]:
    return [KINDS[n % len(KINDS)].format(i=n // len(KINDS)) for n in range(count)]


def write(versions: Path, revisions: list[list[str]]) -> None:
    """`revisions`, each a list of statements, in a line after the project's head."""
    head = _head(versions)
    for index, body in enumerate(revisions):
        rev = f"b{index:011x}"
        lines = "\n".join(f"    op.execute({sql!r})" for sql in body)
        (versions / f"bench_{index:02d}.py").write_text(
            REVISION.format(rev=rev, down=head, body=lines)
        )
        head = rev


def _head(versions: Path) -> str:
    import ast

    revisions, parents = set(), set()
    for path in versions.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(
                node.value, ast.Constant
            ):
                target = node.targets[0] if isinstance(node, ast.Assign) else node.target
                name = getattr(target, "id", "")
                if name == "revision":
                    revisions.add(node.value.value)
                elif name == "down_revision" and node.value.value:
                    parents.add(node.value.value)
    (head,) = revisions - parents
    return str(head)


def measure(repetitions: int, count: int = 200) -> list[Result]:
    results = []
    shapes = {
        f"plan: `inv db.plan`, 1 revision of {count} statements, vs `inv db.upgrade --sql`": [
            statements(count)
        ],
        "plan: `inv db.plan`, 7 revisions, vs `inv db.upgrade --sql` (reported)": [
            statements(count)[n * 3 : n * 3 + 3] for n in range(7)
        ],
    }
    for name, revisions in shapes.items():
        with scratch() as project:
            command(project.inv("db.upgrade"), project.root, project.env)()
            write(project.root / "migrations" / "versions", revisions)
            plan = project.inv("db.plan", "--fail-on", "never")
            render = project.inv("db.upgrade", "--sql")
            ours, bare = alternate(
                command(plan, project.root, project.env),
                command(render, project.root, project.env),
                repetitions,
            )
        target = "<= 3x" if "7 revisions" not in name else "reported"
        results.append(Result(name, ours, bare, target))
    return results
