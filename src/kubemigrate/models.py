"""Model discovery: import what the `models` option names so its SQLModel tables register.

Alembic's env.py calls `discover("app.entities")` (named in alembic.ini as `models`) instead of
keeping a hand-written import list. A module (`app.models`) is imported alone; a package
(`app.entities`) is imported with every module below it. Nothing else of the application is
imported (its `main`, say). Nothing is printed.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import MetaData


def discover(name: str) -> MetaData:
    """Import module `name`, or package `name` and all its submodules; return the SQLModel
    metadata they filled."""
    from sqlmodel import SQLModel

    root = importlib.import_module(name)
    below = getattr(root, "__path__", None)  # only a package has modules below it
    if below is not None:
        for module in pkgutil.walk_packages(below, prefix=f"{name}."):
            importlib.import_module(module.name)
    return SQLModel.metadata
