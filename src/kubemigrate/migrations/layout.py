"""Where a project keeps its migrations, read as Alembic reads them.

A project's alembic.ini may sit in a subdirectory (`backend/alembic.ini`) and name a relative
`script_location` (`app/alembic`), which Alembic resolves against the directory it runs in, the
ini's own when the project runs `alembic` there. kubemigrate resolves it against the ini's
directory wherever `inv` runs, and runs a project's own env.py from that directory too.

`Layout.read` parses the ini with configparser (no Alembic import), so `inv db.current` and the
child Alembic process's parent stay light.
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass
from pathlib import Path

from kubemigrate.errors import SettingsError

# env.py reads `config.attributes["connection"]` (or `.get("connection")`): kubemigrate's
# connection can be handed to it in the task's own process.
TAKES_CONNECTION = re.compile(r"""attributes\s*(?:\[|\.get\()\s*["']connection["']""")


@dataclass(frozen=True)
class Layout:
    """alembic.ini, the migrations directory it names, and its env.py."""

    ini: Path
    script_location: Path | None  # None: a package resource (`pkg:path`), left to Alembic
    options: dict[str, str]

    @property
    def directory(self) -> Path:
        """The ini's directory: where Alembic runs for this project."""
        return self.ini.parent

    @property
    def env_py(self) -> Path | None:
        return self.script_location / "env.py" if self.script_location else None

    @property
    def versions(self) -> Path | None:
        return self.script_location / "versions" if self.script_location else None

    def takes_connection(self) -> bool:
        """Whether env.py takes kubemigrate's connection from `config.attributes`."""
        env_py = self.env_py
        if env_py is None:
            return True
        try:
            return TAKES_CONNECTION.search(env_py.read_text(encoding="utf-8")) is not None
        except OSError:
            return True  # the missing file is reported where it is needed

    def option(self, name: str) -> str | None:
        return self.options.get(name) or None

    @classmethod
    def read(cls, ini: Path) -> Layout:
        """The layout `ini` describes; a missing or unreadable ini is a `SettingsError`."""
        if not ini.is_file():
            raise SettingsError(
                f"no Alembic configuration at {ini}: run kubemigrate from the project directory "
                "or set KUBEMIGRATE_MIGRATIONS_CONFIG"
            )
        parser = configparser.ConfigParser(defaults={"here": str(ini.parent)})
        try:
            parser.read(ini, encoding="utf-8")
            options = dict(parser.items("alembic"))
        except (configparser.Error, UnicodeDecodeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SettingsError(f"{ini} cannot be read: {first}") from None
        return cls(ini, resolve_location(ini, options.get("script_location", "")), options)


def resolve_location(ini: Path, location: str) -> Path | None:
    """`script_location` as a directory: relative to the ini's directory, `%(here)s` already
    expanded; None for a package resource (`package:path`), which Alembic resolves itself."""
    location = location.strip()
    if not location:
        raise SettingsError(f"{ini.name} has no script_location in its [alembic] section")
    path = Path(location)
    if ":" in location and not path.is_absolute() and not re.match(r"^[A-Za-z]:[\\/]", location):
        return None
    return path if path.is_absolute() else (ini.parent / path).resolve()


def resolve_sys_path(layout: Layout) -> list[str]:
    """`prepend_sys_path`'s entries, relative ones resolved against the ini's directory."""
    text = layout.option("prepend_sys_path") or ""
    separator = {"space": " ", "newline": "\n", "os": ":", ";": ";", ":": ":"}.get(
        layout.option("path_separator") or ""
    )
    entries = text.split(separator) if separator else re.split(r"[ ,:]+", text)
    return [str((layout.directory / e.strip()).resolve()) for e in entries if e.strip()]
