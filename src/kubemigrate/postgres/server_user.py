"""The embedded server under root: PostgreSQL refuses to run as root, so it runs as a system
user of its own, created when missing, which must reach its data directory and programs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from kubemigrate.errors import DatabaseError
from kubemigrate.process import children, programs

USER = "pgserver"


def create() -> str | None:
    """Under root, the system user the server runs as (created when missing); else None."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam(USER)
    except KeyError:
        added = children.run(
            programs.command("useradd"),
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            USER,
        )
        if not added.ok:
            raise DatabaseError(
                f"cannot create the system user {USER!r} the embedded "
                f"PostgreSQL runs as under root: {added.errors.summary()}"
            ) from None
    return USER


def become(user: str | None) -> Callable[[], None] | None:
    """In the child: become `user` (and its group alone), for the server under root. With gid
    0 the directories' group bits, not the search bit granted to others, would decide what
    the server may reach."""
    if user is None:
        return None
    import pwd

    record = pwd.getpwnam(user)

    def become() -> None:
        os.setgroups([])
        os.setgid(record.pw_gid)
        os.setuid(record.pw_uid)

    return become


def make_traversable(path: Path) -> None:
    """Give others search permission on every parent of `path` (root only; e.g. /root)."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)
