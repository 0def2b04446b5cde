"""The project's Alembic configuration: its alembic.ini and migrations directory (`layout`),
Alembic's `Config` for it without a URL (`alembic_config`), and one for rendering SQL offline
(`offline_config`), which reaches no database."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

from kubemigrate.errors import SettingsError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from kubemigrate.migrations.layout import Layout
    from kubemigrate.settings.declared import Settings


def layout(settings: Settings) -> Layout:
    """The project's alembic.ini and the migrations directory it names."""
    from kubemigrate.migrations.layout import Layout

    return Layout.read(settings.path(settings.alembic_ini))


def alembic_config(
    settings: Settings, *, stdout: TextIO | None = None, sql_output: TextIO | None = None
) -> Config:
    """Alembic's Config for the project, without a URL and without its own logging setup.

    A relative `script_location` and `prepend_sys_path` are resolved against the ini's
    directory, as Alembic resolves them when run there.
    """
    from alembic.config import Config

    from kubemigrate.migrations.layout import resolve_sys_path

    found = checked(layout(settings))
    config = Config(str(found.ini), stdout=stdout or sys.stdout, output_buffer=sql_output)
    config.attributes["configure_logger"] = False
    if found.script_location is not None:
        config.set_main_option("script_location", str(found.script_location).replace("%", "%%"))
    sys.path[:0] = [entry for entry in resolve_sys_path(found) if entry not in sys.path]
    config.set_main_option("prepend_sys_path", "")
    return config


def checked(found: Layout) -> Layout:
    if found.env_py is not None and not found.env_py.is_file():
        raise SettingsError(
            f"no migrations directory at {found.script_location} (named by script_location in "
            f"{found.ini}); create it with `inv db.init` or fix the path"
        )
    return found


def scripts(config: Config) -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config)


def offline_config(settings: Settings, sql_output: TextIO | None = None) -> Config:
    config = alembic_config(settings, sql_output=sql_output)
    config.attributes["url"] = "postgresql+psycopg2://"
    return config
