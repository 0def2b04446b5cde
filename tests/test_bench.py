"""The benchmarks run (a smoke test: one repetition, small sizes; no timing is asserted)."""

import subprocess
import sys

from tests.conftest import REPO, clean_environ


def test_benchmarks_run() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick"],
        cwd=REPO,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [
        line
        for line in result.stdout.splitlines()
        if line.startswith("| ") and not line.startswith(("| measure", "| ---"))
    ]
    assert len(rows) == 21, result.stdout
