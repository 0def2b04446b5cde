"""pytest-alembic's built-in checks against the project's migrations, on a real PostgreSQL.

single head, upgrade from base to head, up/down consistency, and model definitions matching
the DDL the migrations produce.
"""

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from pytest_alembic.tests import (
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)

from tests.conftest import REPO

__all__ = [
    "test_model_definitions_match_ddl",
    "test_single_head_revision",
    "test_up_down_consistency",
    "test_upgrade",
]


@pytest.fixture
def alembic_config() -> dict[str, str]:
    return {"file": str(REPO / "alembic.ini")}


@pytest.fixture
def alembic_engine(database_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()
