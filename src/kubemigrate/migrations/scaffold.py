"""The files `inv db.init` writes for a project with no migrations yet.

- `alembic.ini`: dated revision names, the `models` option env.py reads, and ruff formatting of
  new revisions (commented out when ruff is not installed);
- `<directory>/env.py`: hands Alembic kubemigrate's live connection, or `DATABASE_URL` for the
  bare `alembic` command, and finds the tables with `kubemigrate.models.discover`;
- `<directory>/script.py.mako` and an empty `<directory>/versions/`;
- `.env.example`: every kubemigrate setting with its help, all commented out.

env.py and script.py.mako are copied from `kubemigrate/migrations/templates/`. Nothing is
overwritten: when any of the files exists, nothing at all is written. The files are written all or
none: each under a temporary name first, then all renamed; should any write fail (a full disk, a
read-only directory), what was written and the directories made for it are removed again."""

from __future__ import annotations

from importlib.resources import files
from importlib.util import find_spec
from pathlib import Path

from kubemigrate.errors import KubemigrateError, SettingsError, reason
from kubemigrate.files import make_directories, remove, remove_directories, shown, stage
from kubemigrate.settings.declared import SETTINGS

ENV_EXAMPLE_HEADER = """\
# kubemigrate settings. Copy to .env (untracked) or .env.<environment> and uncomment what you need.
# Order, later wins: defaults, .env, .env.<environment>, the process environment.
# Passwords belong in a Kubernetes Secret or an untracked .env, never in a committed file.
"""

ALEMBIC_INI = """\
# Alembic configuration, written by kubemigrate (`inv db.init`).
# The database URL is never written here: `inv db.*` hands Alembic a live connection, and the
# bare `alembic` command reads DATABASE_URL from the environment (see {directory}/env.py).

[alembic]
script_location = %(here)s/{directory}
prepend_sys_path = .
path_separator = space
# Names like 20261124_1430_add_user_table.py
file_template = %%(year)d%%(month).2d%%(day).2d_%%(hour).2d%%(minute).2d_%%(slug)s
truncate_slug_length = 40
timezone = UTC
# The module or package that defines the SQLModel tables; env.py imports all of it.
models = {models}

[post_write_hooks]
# New revisions are formatted and import-sorted like the rest of the code.
{hooks}
[loggers]
keys = root,sqlalchemy,alembic

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console
qualname =

[logger_sqlalchemy]
level = WARNING
handlers =
qualname = sqlalchemy.engine

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
datefmt = %H:%M:%S
"""

NO_RUFF = "# Install ruff (e.g. `uv add --dev ruff`) and uncomment these lines to enable them.\n"
RUFF_HOOKS = """\
hooks = ruff_fix, ruff_format
ruff_fix.type = module
ruff_fix.module = ruff
ruff_fix.options = check --fix --quiet REVISION_SCRIPT_FILENAME
ruff_format.type = module
ruff_format.module = ruff
ruff_format.options = format --quiet REVISION_SCRIPT_FILENAME
"""


def env_example() -> str:
    """The text of `.env.example`: every setting with its help, commented out."""
    blocks = [ENV_EXAMPLE_HEADER]
    for setting in SETTINGS:
        blocks.append(f"\n# {setting.help}\n# {setting.name}={setting.default}\n")
    return "".join(blocks)


def ruff_installed() -> bool:
    """Whether ruff can run as `python -m ruff`, as the post-write hooks do."""
    return find_spec("ruff") is not None


def hooks(*, ruff: bool) -> str:
    """The `[post_write_hooks]` options: ruff's, or the same commented out without ruff."""
    if ruff:
        return RUFF_HOOKS
    return NO_RUFF + "".join(f"# {line}\n" for line in RUFF_HOOKS.splitlines())


def alembic_ini(*, models: str, directory: str, ruff: bool) -> str:
    """The text of `alembic.ini` for migrations in `directory` of the tables of `models`."""
    return ALEMBIC_INI.format(models=models, directory=directory, hooks=hooks(ruff=ruff))


def template(name: str) -> str:
    """A file of `kubemigrate/migrations/templates/`, as text."""
    return (files("kubemigrate.migrations") / "templates" / name).read_text(encoding="utf-8")


def planned(*, models: str, directory: str) -> dict[str, str]:
    """What `init` writes: the text of each file, by its path relative to the project."""
    return {
        "alembic.ini": alembic_ini(models=models, directory=directory, ruff=ruff_installed()),
        f"{directory}/env.py": template("env.py"),
        f"{directory}/script.py.mako": template("script.py.mako"),
        f"{directory}/versions/.gitkeep": "",
        ".env.example": env_example(),
    }


def check_names(*, models: str, directory: str) -> None:
    """Refuse a models name that is not a dotted Python name, or a directory outside the
    project (both are written into alembic.ini)."""
    if not models or not all(part.isidentifier() for part in models.split(".")):
        raise SettingsError(
            f"models {models!r} is not a module or package name (like app.models); "
            "nothing was written"
        )
    path = Path(directory)
    if not path.parts or path.is_absolute() or ".." in path.parts or "%" in directory:
        raise SettingsError(
            f"migrations directory {directory!r} must be a path inside the project "
            "(like migrations); nothing was written"
        )


def first_existing(project_dir: Path, directory: str, paths: list[str]) -> str | None:
    """The first of `paths` (relative to `project_dir`) that exists, or the migrations
    directory when it exists and is not empty; None when the way is clear."""
    folder = project_dir / directory
    for path in paths:
        if path.startswith(f"{directory}/") and folder.exists():
            if not folder.is_dir():
                return f"{directory} already exists (a file)"
            if any(folder.iterdir()):
                return f"{directory}/ already exists and is not empty"
        if (project_dir / path).exists():
            return f"{path} already exists"
    return None


def content(text: str) -> bytes:
    """`text` as a file holds it: utf-8, ending with a newline unless empty."""
    if text and not text.endswith("\n"):
        text += "\n"
    return text.encode("utf-8")


def write_all(project_dir: Path, texts: dict[str, str]) -> list[Path]:
    """Write each of `texts` (by path relative to `project_dir`), making their folders: all of
    them or, should any write fail, none (a `KubemigrateError` names the path and why). The
    paths written."""
    made: list[Path] = []  # directories created, deepest first
    staged: dict[Path, Path] = {}  # each file, by its temporary name
    placed: list[Path] = []
    current = project_dir
    try:
        for name, text in texts.items():
            current = project_dir / name
            made = make_directories(current.parent) + made
            staged[stage(current, content(text))] = current
        for temporary, path in staged.items():
            current = path
            temporary.rename(path)
            placed.append(path)
    except BaseException as exc:
        remove(*staged, *placed)
        remove_directories(made)
        if isinstance(exc, OSError):
            raise KubemigrateError(
                f"cannot write {shown(current)}: {reason(exc)}; nothing was written"
            ) from None
        raise
    return placed


def init(
    project_dir: Path, *, models: str = "app.models", directory: str = "migrations"
) -> list[Path]:
    """Write Alembic's configuration and an empty migrations directory into `project_dir`.

    `models` is the module or package of the SQLModel tables (alembic.ini's `models` option);
    `directory` is where the migrations go. Nothing is written when any of the files already
    exists or the directory is not empty: SettingsError names the first one. The paths written.
    """
    directory = Path(directory).as_posix()
    check_names(models=models, directory=directory)
    texts = planned(models=models, directory=directory)
    existing = first_existing(project_dir, directory, list(texts))
    if existing:
        raise SettingsError(f"{existing} in {project_dir}; nothing was written")
    return write_all(project_dir, texts)
