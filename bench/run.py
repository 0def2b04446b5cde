"""Run the benchmarks, print a table and write bench/results.md.

uv run python -m bench.run              # the full run (about 8 minutes on 2 cores)
uv run python -m bench.run --quick      # one repetition, small sizes (the suite's smoke test)
"""

import argparse
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench import (
    await_schema,
    backup_throughput,
    chain,
    current,
    export_upgrade,
    job,
    ledger,
    noop_upgrade,
    plan,
    scaling,
    startup,
    tunnel,
)
from bench.timing import HEADER, Result

RESULTS = Path(__file__).resolve().parent / "results.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one repetition, small sizes")
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    reps = 1 if args.quick else args.repetitions
    results: list[Result] = []
    results += startup.measure(reps)
    results += noop_upgrade.measure(reps)
    results += export_upgrade.measure(reps)
    results += current.measure(reps)
    results += scaling.measure(reps, counts=(2,) if args.quick else (1, 10, 100, 500))
    results += ledger.measure(reps, count=10 if args.quick else 100)
    results += await_schema.measure(reps)
    results += tunnel.measure(reps)
    results += chain.measure(reps)
    results += job.measure(reps)
    results += plan.measure(reps, count=20 if args.quick else 200)
    results += backup_throughput.measure(min(reps, 3), scale=2 if args.quick else 40)
    table = "\n".join([HEADER, *(r.row() for r in results)])
    print(table)
    if not args.quick:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        args.output.write_text(
            f"# Benchmark results\n\n{stamp}, {platform.machine()}, {_cores()} cores, Python "
            f"{platform.python_version()}; {reps} alternating repetitions per side (backups: "
            f"{min(reps, 3)}), after one warm-up each.\n"
            f"Reproduce with `uv run python -m bench.run`.\n\n{table}\n"
        )
    return 0


def _cores() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    sys.exit(main())
