"""11. The ledger's cost: `inv db.upgrade` from base across 100 trivial revisions with the ledger
(a row per step, in the step's transaction) against the same upgrade with
`KUBEMIGRATE_LEDGER=false` (target: at most 1.1x)."""

from bench.scaling import generate
from bench.timing import BIN, Result, alternate, command, scratch


def measure(repetitions: int, count: int = 100) -> list[Result]:
    with scratch() as project:
        generate(project.root / "migrations" / "versions", count)
        reset = command([str(BIN / "alembic"), "downgrade", "base"], project.root, project.env)
        on = command(project.inv("db.upgrade"), project.root, project.env)
        off = command(
            project.inv("db.upgrade"), project.root, {**project.env, "KUBEMIGRATE_LEDGER": "false"}
        )
        mine, theirs = alternate(on, off, repetitions, before=reset)
    return [
        Result(
            f"ledger: upgrade from base, {count} revision(s), ledger on vs off",
            mine,
            theirs,
            "<= 1.1x",
        )
    ]
