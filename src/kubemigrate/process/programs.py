"""Finding a program on disk: the one place that looks, and that says how to install what is
missing; and the program as an `sh` command (`command`), which logs nothing of what passes."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kubemigrate.errors import KubemigrateError

if TYPE_CHECKING:
    import sh


def locate(name: str, beside: Sequence[Path] = ()) -> str | None:
    """The full path of program `name`: a path as given, else the first on PATH, else the first
    in the directories `beside`; None when there is none."""
    found = shutil.which(name)
    for directory in beside:
        found = found or shutil.which(name, path=str(directory))
    return found


def find(
    name: str,
    *,
    install: str,
    error: type[KubemigrateError],
    what: str | None = None,
    beside: Sequence[Path] = (),
) -> str:
    """The full path of program `name` (see `locate`); else `error`, one line naming the
    program (`what`, by default its name) and how to install it."""
    found = locate(name, beside)
    if found is None:
        raise error(f"{what or name} not found: {name!r} is not on PATH; {install}")
    return found


def command(path: str) -> sh.Command:
    """The program at `path` (or a name on PATH) as an `sh` command."""
    import sh

    # At DEBUG, sh logs the first bytes of what passes to and from a child: a Secret's data,
    # the password line for pg_dump in the pod. It never logs below WARNING, whatever the root
    # logger says (`inv --debug` sets DEBUG).
    logging.getLogger("sh").setLevel(logging.WARNING)
    return sh.Command(path)
