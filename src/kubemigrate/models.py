"""Model discovery: import every module of a package so its SQLModel tables register.

Alembic's env.py calls `discover("app.entities")` (the package is named in alembic.ini as
`models_package`) instead of keeping a hand-written import list. Nothing is printed.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import MetaData


def discover(package: str) -> MetaData:
    """Import `package` and all its submodules; return the SQLModel metadata they filled."""
    from sqlmodel import SQLModel

    root = importlib.import_module(package)
    for module in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        importlib.import_module(module.name)
    return SQLModel.metadata
