"""Shared by the benchmarks: timing commands, and a scratch project on a private PostgreSQL.

Every measure is a ratio against the bare tool timed in the same run, over several
repetitions taken in alternation (so drift in the machine's load hits both sides alike);
a result reports both medians, the ratio of medians and the spread (min-max) of each side.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent


@dataclass(frozen=True)
class Result:
    measure: str
    ours: list[float]
    bare: list[float]
    target: str
    difference: bool = False  # compared by the difference of medians rather than their ratio

    @property
    def ratio(self) -> float:
        return statistics.median(self.ours) / statistics.median(self.bare)

    @property
    def extra(self) -> float:
        """Seconds the median of ours takes beyond the bare tool's."""
        return statistics.median(self.ours) - statistics.median(self.bare)

    def row(self) -> str:
        def show(samples: list[float]) -> str:
            return (
                f"{statistics.median(samples) * 1000:.0f} ms "
                f"({min(samples) * 1000:.0f}-{max(samples) * 1000:.0f})"
            )

        compared = f"{self.extra * 1000:+.0f} ms" if self.difference else f"{self.ratio:.2f}x"
        return (
            f"| {self.measure} | {show(self.ours)} | {show(self.bare)} | {compared} | "
            f"{self.target} |"
        )


HEADER = (
    "| measure | kubemigrate: median (min-max) | bare tool: median (min-max) | ratio or extra | "
    "target |\n| --- | --- | --- | --- | --- |"
)


def alternate(
    ours: Callable[[], float],
    bare: Callable[[], float],
    repetitions: int,
    before: Callable[[], object] | None = None,
) -> tuple[list[float], list[float]]:
    """Run both sides `repetitions` times, alternating, after one untimed warm-up each; each
    side returns the seconds it measured. `before` runs, untimed, before every run of either."""
    mine, theirs = rotate([ours, bare], repetitions, before)
    return mine, theirs


def rotate(
    sides: list[Callable[[], float]],
    repetitions: int,
    before: Callable[[], object] | None = None,
) -> list[list[float]]:
    """`alternate` for any number of sides: one untimed warm-up each, then `repetitions` rounds
    running every side in turn; each side's samples, in the order given."""
    prepare = before or (lambda: None)
    for side in sides:
        prepare()
        side()
    samples: list[list[float]] = [[] for _ in sides]
    for _ in range(repetitions):
        for side, times in zip(sides, samples, strict=True):
            prepare()
            times.append(side())
    return samples


def command(argv: list[str], cwd: Path, env: dict[str, str]) -> Callable[[], float]:
    """A callable running `argv` and returning its wall time, failing loudly if it fails."""

    def run() -> float:
        started = time.perf_counter()
        result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"{argv} failed: {result.stderr.decode()[-500:]}")
        return time.perf_counter() - started

    return run


@dataclass
class Scratch:
    """A copy of the project, and a private PostgreSQL with one database for it."""

    root: Path
    url: str
    env: dict[str, str]

    @property
    def dsn(self) -> str:
        """The URL as libpq's programs (pg_dump, psql, pgbench) take it."""
        return self.url.replace("postgresql+psycopg2://", "postgresql://", 1)

    def inv(self, *argv: str) -> list[str]:
        return [PYTHON, "-m", "invoke", *argv]


@contextmanager
def scratch() -> Iterator[Scratch]:
    import os

    from kubemigrate.postgres.embedded import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="kubemigrate-bench-") as directory:
        root = Path(directory) / "project"
        root.mkdir()
        for name in ("alembic.ini", "tasks.py"):
            shutil.copy(REPO / name, root / name)
        shutil.copytree(
            REPO / "migrations", root / "migrations", ignore=shutil.ignore_patterns("__pycache__")
        )
        server = EmbeddedPostgres(Path(directory) / "pgdata")
        server.start()
        try:
            server.ensure_database("bench")
            url = server.url("bench")
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith("KUBEMIGRATE_") and k != "DATABASE_URL"
            }
            env["DATABASE_URL"] = url
            yield Scratch(root, url, env)
        finally:
            server.stop()
