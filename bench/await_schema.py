"""12. Replicas that wait for the schema: how soon `inv db.await` returns after the upgrade
it waits for lands (the ledger's end of the step, committed with it) (target: within 1 s)."""

import json
import re
import subprocess
import time
from datetime import datetime

from bench.scaling import TRIVIAL
from bench.timing import PYTHON, Result, Scratch, scratch

# A revision whose upgrade takes a second: the scaling bench's trivial one, slowed.
SLOW = TRIVIAL.replace('op.execute("SELECT 1")', 'op.execute("SELECT pg_sleep(1)")', 1)


def measure(repetitions: int) -> list[Result]:
    with scratch() as project:
        versions = project.root / "migrations" / "versions"
        (only,) = versions.glob("*.py")
        found = re.search(r'^revision\b[^"]*"(\w+)"', only.read_text(), re.M)
        assert found is not None, only
        first = found.group(1)
        (versions / "slow.py").write_text(SLOW.format(rev="5105105105ab", down=first))
        after = [_returned_after(project, first) for _ in range(repetitions)]
    return [
        Result(
            "db.await: returns after the pre-deploy head lands",
            after,
            [0.0] * len(after),
            "<= +1000 ms",
            difference=True,
        )
    ]


def _returned_after(project: Scratch, first: str) -> float:
    """Seconds between the slow step's commit and `inv db.await` returning."""
    _inv(project, "db.upgrade", "-r", first)
    upgrade = subprocess.Popen(project.inv("db.upgrade"), cwd=project.root, env=project.env)
    waiting = subprocess.Popen(project.inv("db.await"), cwd=project.root, env=project.env)
    waiting.wait(timeout=120)
    returned = time.time()
    upgrade.wait(timeout=120)
    landed = _inv(project, "db.history", "--applied", "--format", "json")
    row = json.loads(landed)["rows"][0]
    _inv(project, "db.downgrade", "-1")
    return returned - datetime.fromisoformat(row["finished_at"]).timestamp()


def _inv(project: Scratch, *argv: str) -> str:
    done = subprocess.run(
        [PYTHON, "-m", "invoke", *argv],
        cwd=project.root,
        env=project.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout
