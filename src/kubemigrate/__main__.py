"""`python -m kubemigrate upgrade|downgrade|stamp REVISION`: what a migration Job runs.

The settings come from the environment (the Job sets them, the credentials by `secretKeyRef`)
and the project's `.env` files, as for `inv`; the migration takes the local path: advisory lock,
lock and statement timeouts, one transaction per migration. Exit codes: 0 done, 1 a failure
(one line on stderr), 130 / 143 interrupted.
"""

from __future__ import annotations

import argparse
import sys


def parser() -> argparse.ArgumentParser:
    commands = argparse.ArgumentParser(
        prog="python -m kubemigrate", description=__doc__.splitlines()[0]
    )
    chosen = commands.add_subparsers(dest="command", required=True)
    for name, what in (
        ("upgrade", "Upgrade the database to REVISION (head: the newest)."),
        ("downgrade", "Downgrade the database to REVISION (-1: one step back)."),
        ("stamp", "Record REVISION as current without running migrations."),
    ):
        command = chosen.add_parser(name, help=what, description=what)
        command.add_argument("revision")
    return commands


def main(argv: list[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    from kubemigrate.errors import KubemigrateError
    from kubemigrate.migrations import commands, logs
    from kubemigrate.process.interrupts import install_signal_handlers
    from kubemigrate.settings.sources import load_settings
    from kubemigrate.target.database import close_session

    install_signal_handlers()
    logs.configure_logging()
    run = {
        "upgrade": commands.upgrade,
        "downgrade": commands.downgrade,
        "stamp": commands.stamp,
    }[arguments.command]
    try:
        run(load_settings(), arguments.revision)
    except KubemigrateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print("error: interrupted; the migration in progress was rolled back", file=sys.stderr)
        return int(getattr(exc, "exit_code", 130))
    finally:
        close_session()
    return 0


if __name__ == "__main__":
    sys.exit(main())
