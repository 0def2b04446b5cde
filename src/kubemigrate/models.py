"""Model discovery: import what the `models` option names so its SQLModel tables register.

Alembic's env.py calls `discover("app.entities")` (named in alembic.ini as `models`) instead of
keeping a hand-written import list. A module (`app.models`) is imported alone; a package
(`app.entities`) is imported with every module below it. Nothing else of the application is
imported (its `main`, say). Nothing is printed.

SQLModel is not one of kubemigrate's own dependencies: a project whose env.py uses this module
has it (`uv add sqlmodel`, or the `kubemigrate[sqlmodel]` extra); without it, `discover` says so
in one line.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from kubemigrate.errors import SettingsError

if TYPE_CHECKING:
    from sqlalchemy import MetaData


def discover(name: str) -> MetaData:
    """Import module `name`, or package `name` and all its submodules; return the SQLModel
    metadata they filled."""
    try:
        from sqlmodel import SQLModel
    except ModuleNotFoundError as exc:
        if exc.name != "sqlmodel":
            raise
        raise SettingsError(
            "sqlmodel is not installed, and env.py finds the tables with it "
            "(kubemigrate.models): `uv add sqlmodel`, or install kubemigrate[sqlmodel]"
        ) from None

    root = importlib.import_module(name)
    below = getattr(root, "__path__", None)  # only a package has modules below it
    if below is not None:
        for module in pkgutil.walk_packages(below, prefix=f"{name}."):
            importlib.import_module(module.name)
    return SQLModel.metadata


# kubemigrate's own table beside Alembic's version table (`kubemigrate.migrations.ledger`).
LEDGER_TABLE = "kubemigrate_history"


def include_name(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
    """An `include_name` for env.py's `context.configure`: autogenerate leaves kubemigrate's
    ledger table alone, as it leaves Alembic's version table (kubemigrate's own commands add
    this filter themselves; bare `alembic revision --autogenerate` needs it in env.py)."""
    return not (type_ == "table" and name == LEDGER_TABLE)
