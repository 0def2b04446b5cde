"""`python -m kubemigrate upgrade|downgrade|stamp REVISION`: what a migration Job runs; and
`python -m kubemigrate await`: what a replica's init container runs.

The settings come from the environment (the Job sets them, the credentials by `secretKeyRef`)
and the project's `.env` files, as for `inv`; the migration takes the local path: advisory lock,
lock and statement timeouts, one transaction per migration. `upgrade --phase pre|post REVISION`
applies one phase of a release (`kubemigrate.migrations.phases`). `await` waits, read-only,
until the database has what the image's own migration files need for its code (the pre-deploy
revisions). Exit codes: 0 done, 1 a failure (one line on stderr), 130 / 143 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubemigrate.settings.declared import Settings

AWAIT_TIMEOUT = 600.0


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
        if name == "upgrade":
            command.add_argument(
                "--phase",
                choices=("pre", "post"),
                help="Apply one phase of a release: pre (before the rollout) or post (after).",
            )
        command.add_argument("revision")
    what = "Wait until the database has the revisions this image's code needs."
    waiting = chosen.add_parser("await", help=what, description=what)
    waiting.add_argument(
        "--timeout", type=float, default=AWAIT_TIMEOUT, help="Seconds to wait (default: 600)."
    )
    return commands


def main(argv: list[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    from kubemigrate.errors import KubemigrateError
    from kubemigrate.migrations import logs
    from kubemigrate.process.interrupts import install_signal_handlers
    from kubemigrate.settings.sources import load_settings
    from kubemigrate.target.database import close_session

    install_signal_handlers()
    logs.configure_logging()
    try:
        run(arguments, load_settings())
    except KubemigrateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print("error: interrupted; the migration in progress was rolled back", file=sys.stderr)
        return int(getattr(exc, "exit_code", 130))
    finally:
        close_session()
    return 0


def run(arguments: argparse.Namespace, settings: Settings) -> None:
    """The command the arguments name, for `settings`."""
    from kubemigrate.migrations import commands, phase_runs

    if arguments.command == "await":
        phase_runs.wait(settings, arguments.timeout)
        print("The database has what this image needs.", file=sys.stderr)
    elif arguments.command == "upgrade" and arguments.phase:
        phase_runs.upgrade(settings, arguments.phase)
    elif arguments.command == "upgrade":
        commands.upgrade(settings, arguments.revision)
    elif arguments.command == "downgrade":
        commands.downgrade(settings, arguments.revision)
    else:
        commands.stamp(settings, arguments.revision)


if __name__ == "__main__":
    sys.exit(main())
