"""Run by bench/tunnel.py inside the scratch project: print the seconds from a task's start to
its first successful query through the tunnel, for `--env NAME`. The query is the one
`inv db.upgrade` makes first: taking the migration lock. The modules a task imports on its way
are imported first, untimed: the measure is the tunnel's, not Python's import time."""

import sys
import time

import psycopg2  # noqa: F401
import sh  # noqa: F401

import kubemigrate.kubernetes.reach
import kubemigrate.process.interrupts  # noqa: F401
from kubemigrate.postgres.locking import migration_lock
from kubemigrate.target import database
from kubemigrate.tasks.common import load


def main(environment: str) -> None:
    started = time.perf_counter()
    settings = load(environment)
    with migration_lock(database.database(settings), settings.lock_wait):
        elapsed = time.perf_counter() - started
    print(elapsed)


if __name__ == "__main__":
    main(sys.argv[1])
