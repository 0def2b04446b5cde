"""Run by bench/tunnel.py inside the scratch project: print the seconds from a task's start to
its first successful query, for `--env NAME`. The modules a task imports on its way are
imported first, untimed: the measure is the tunnel's, not Python's import time."""

import sys
import time

import psycopg2  # noqa: F401
import sh  # noqa: F401
import sqlalchemy.dialects.postgresql.psycopg2  # noqa: F401

import kubemigrate.cluster
import kubemigrate.interrupts  # noqa: F401
from kubemigrate import target
from kubemigrate.tasks.common import load


def main(environment: str) -> None:
    started = time.perf_counter()
    settings = load(environment)
    with target.connect(target.database(settings)) as connection:
        connection.exec_driver_sql("SELECT 1")
    print(time.perf_counter() - started)


if __name__ == "__main__":
    main(sys.argv[1])
