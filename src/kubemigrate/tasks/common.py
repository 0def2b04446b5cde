"""What every task module shares: loading settings and turning failures into exits."""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from invoke import Exit

from kubemigrate.errors import KubemigrateError
from kubemigrate.settings.declared import Settings
from kubemigrate.settings.sources import load_settings

F = TypeVar("F", bound=Callable[..., Any])

ENV_HELP = "Environment: reads .env.<ENV> (default: KUBEMIGRATE_ENV, else local)."
IN_CLUSTER_HELP = (
    "Run it in the cluster, as a Kubernetes Job from the release's image (as "
    "KUBEMIGRATE_RUNNER=job does)."
)


def load(env: str | None) -> Settings:
    """Settings for `--env`; Alembic logs to stderr."""
    from kubemigrate.migrations.logs import configure_logging
    from kubemigrate.process.interrupts import install_signal_handlers

    install_signal_handlers()
    configure_logging()
    return load_settings(env)


def invocation_calls(body: str) -> list[dict[str, Any]]:
    """The options of each call of the task whose body is the function `body` (its module and
    name, e.g. `kubemigrate.tasks.db.upgrade`; under any of the task's names) in this `inv`
    invocation, read from the command line invoke parsed.

    Only the `inv`/`invoke` program's parse is known; under another Program there are none.
    """
    from invoke.main import program

    collection = getattr(program, "collection", None)
    calls = []
    for parsed in getattr(program, "tasks", None) or []:
        try:
            found = collection[parsed.name] if collection is not None else None
        except (KeyError, ValueError):
            continue
        if found is not None and f"{found.body.__module__}.{found.body.__qualname__}" == body:
            calls.append({name: argument.value for name, argument in parsed.args.items()})
    return calls


def confirmation(yes: bool) -> Callable[[str], bool]:
    """Ask on the terminal; `--yes` answers for pipelines; no terminal and no --yes refuses."""

    def confirm(question: str) -> bool:
        if yes:
            return True
        if not has_terminal():
            raise KubemigrateError(
                "this needs confirmation and there is no terminal to ask on; pass --yes"
            )
        return answer(f"{question} [y/N] ") in ("y", "yes")

    return confirm


def has_terminal() -> bool:
    """Whether standard input is a terminal to ask on (not closed, not a pipe or a file)."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):  # closed, or its descriptor is gone
        return False


def answer(prompt: str) -> str:
    """The user's answer to `prompt` (shown on stderr, with the messages, so that standard
    output keeps only results), lowercased; end of input (Ctrl-D, a terminal that went away)
    is an empty answer, which is "no"."""
    try:
        sys.stderr.write(prompt)
        sys.stderr.flush()
        return input().strip().lower()
    except (EOFError, OSError, ValueError):  # ValueError: standard input was closed
        with contextlib.suppress(OSError, ValueError):  # stderr is gone too
            sys.stderr.write("\n")  # end the prompt's line, so the error starts on its own
        return ""


def confirm_if_protected(settings: Settings, question: str, yes: bool) -> None:
    """On a protected environment, ask (or take --yes); a 'no' changes nothing."""
    if settings.protected and not confirmation(yes)(
        f"{question} ({settings.environment} is protected)"
    ):
        raise KubemigrateError("cancelled; nothing was changed")


def _with_note(message: str, step: str) -> str:
    """What this invocation's release did so far (on a line of its own), then the error: the
    error line is always the last one."""
    from kubemigrate.release.journal import journal

    note = journal.failure_note(step)
    return f"{note}\n{message}" if note else message


def reports_errors(func: F) -> F:
    """Expected failures end the task with their one-line message and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except KubemigrateError as exc:
            raise Exit(_with_note(f"error: {exc}", func.__name__), code=exc.exit_code) from None
        except KeyboardInterrupt as exc:
            # SIGTERM arrives as Terminated (143); Ctrl-C as a plain KeyboardInterrupt (130).
            message = "error: interrupted; the step in progress was rolled back"
            code = getattr(exc, "exit_code", 130)
            raise Exit(_with_note(message, func.__name__), code=code) from None
        except OSError as exc:  # a file kubemigrate reads or writes, where no step said more
            raise Exit(_with_note(f"error: {_file_failure(exc)}", func.__name__)) from None

    return wrapper  # type: ignore[return-value]


def _file_failure(exc: OSError) -> str:
    """One line for an operating system error: which file, and why in words."""
    from kubemigrate.errors import reason
    from kubemigrate.files import shown

    where = f"{shown(exc.filename)}: " if exc.filename else ""
    return f"{where}{reason(exc)}"
