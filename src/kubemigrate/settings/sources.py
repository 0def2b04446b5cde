"""Where each setting's value comes from: defaults, `.env` files and the environment.

Settings are read in this order, later wins:

1. the defaults below;
2. `.env` in the project directory;
3. `.env.<environment>` for the chosen environment (`--env NAME` or `KUBEMIGRATE_ENV`);
4. the process environment.

Only names starting with `KUBEMIGRATE_`, plus `DATABASE_URL`, are ours. A `.env` file usually
serves the application too, so its other names are left alone; an unknown `KUBEMIGRATE_` name is
an error (most likely a typo), and so is a malformed value. Both name the setting and the file it
came from, and never echo a value, which may be a password.

pydantic-settings was weighed and not taken: it does not record which source (which file, or
the environment) a value came from, which every message here names; it ignores, rather than
refuses, an unknown `KUBEMIGRATE_` name in the process environment; and it would be one more
import in every task's start for what a hundred lines do here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubemigrate.errors import SettingsError
from kubemigrate.settings.declared import BY_NAME, SETTINGS, Setting, Settings
from kubemigrate.settings.kinds import PREFIX, Unshown


def find_project_dir(start: Path | None = None) -> Path:
    """The nearest directory, from `start` upwards, that holds `alembic.ini` or `tasks.py`."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "alembic.ini").is_file() or (candidate / "tasks.py").is_file():
            return candidate
    return here


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of one `.env` file; a line that does not parse is an error.

    The message names the file and line, never the line's text (it may hold a password).
    """
    import io

    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    text = _env_file_text(path)
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise SettingsError(
                f"{path.name}, line {binding.original.line}: cannot parse this line; "
                "write NAME=value (quote values with spaces or #)"
            )
    values = dotenv_values(stream=io.StringIO(text), interpolate=True)
    return {key: value for key, value in values.items() if value is not None}


def _env_file_text(path: Path) -> str:
    """The text of a `.env` file, read as UTF-8 (a byte order mark is dropped, as an editor
    saving UTF-8 may write one). A file that cannot be read, or is not UTF-8, is an error
    naming the file and the first line that is not; never the line's bytes."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SettingsError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SettingsError(
            f"{path.name}, line {line}: not UTF-8 text; save the file as UTF-8"
        ) from None


def _in_utf8(values: Mapping[str, str], origin: str) -> None:
    """Refuse a value of ours that the environment holds as bytes that are not UTF-8 (Python
    keeps them as lone surrogates, which no driver or child process could be given)."""
    for name, value in values.items():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise SettingsError(
                f"{name} from {origin} is not valid: its value is not UTF-8 text"
            ) from None


# What the task starting a migration Job passes to it (the ledger's facts): no setting.
PASSED = ("KUBEMIGRATE_LEDGER_FACTS",)


def _ours(name: str) -> bool:
    return (name.startswith(PREFIX) and name not in PASSED) or name == "DATABASE_URL"


def _layer(values: Mapping[str, str], origin: str) -> dict[str, tuple[str, str]]:
    layer: dict[str, tuple[str, str]] = {}
    for name, value in values.items():
        if not _ours(name):
            continue
        if name not in BY_NAME:
            raise SettingsError(
                f"unknown setting {name} in {origin}; known settings are listed in .env.example"
            )
        layer[name] = (value, origin)
    _in_utf8({name: value for name, (value, _) in layer.items()}, origin)
    return layer


def load_settings(
    environment: str | None = None,
    *,
    project_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read the settings for `environment` (None: `KUBEMIGRATE_ENV`, then `.env`, then local)."""
    project = (project_dir or find_project_dir()).resolve()
    env = os.environ if environ is None else environ

    base_file = project / ".env"
    raw: dict[str, tuple[str, str]] = {}
    if base_file.is_file():
        raw.update(_layer(read_env_file(base_file), ".env"))
    process = _layer(env, "the environment")

    env_setting = BY_NAME["KUBEMIGRATE_ENV"]
    chosen, origin = _environment_choice(environment, process, raw)
    chosen = parse(env_setting, chosen, origin)

    env_file = project / f".env.{chosen}"
    if env_file.is_file():
        raw.update(_layer(read_env_file(env_file), env_file.name))
    elif chosen != env_setting.default:
        raise SettingsError(
            f"unknown environment {chosen!r} (from {origin}): there is no {env_file.name} "
            f"in {project}; create it or choose another environment"
        )
    raw.update(process)
    raw["KUBEMIGRATE_ENV"] = (chosen, origin)

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    texts: dict[str, str] = {}
    for setting in SETTINGS:
        text, origin = raw.get(setting.name, (setting.default, "default"))
        values[setting.attr] = parse(setting, text, origin)
        sources[setting.attr] = origin
        texts[setting.attr] = text
    return Settings(project_dir=project, sources=sources, texts=texts, **values)


def _environment_choice(
    environment: str | None,
    process: Mapping[str, tuple[str, str]],
    files: Mapping[str, tuple[str, str]],
) -> tuple[str, str]:
    """The environment's name and where it came from: `--env`, else `KUBEMIGRATE_ENV` (the
    process's, then `.env`'s), else local. An empty one is an error, not local: `--env ""`
    or `KUBEMIGRATE_ENV=` is more likely a variable that did not expand."""
    default = (BY_NAME["KUBEMIGRATE_ENV"].default, "default")
    if environment is not None:
        chosen, origin = environment, "--env"
    else:
        chosen, origin = process.get("KUBEMIGRATE_ENV") or files.get("KUBEMIGRATE_ENV", default)
    if not chosen.strip():
        given = "--env" if origin == "--env" else f"KUBEMIGRATE_ENV (from {origin})"
        raise SettingsError(
            f"{given} is empty; pass an environment name, e.g. --env staging for .env.staging, "
            f"or leave {given.split()[0]} out for local"
        )
    return chosen, origin


SHOWN = 40  # characters of a malformed value shown in its message


def parse(setting: Setting, text: str, origin: str) -> Any:
    """The value of `setting` read from `text`; a malformed one names the setting and origin.

    The message shows the text (its start, when long), unless the setting is a secret or the
    kind says the text may hold one (`Unshown`).
    """
    try:
        return setting.kind(text)
    except ValueError as exc:
        short = text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."
        shown = "" if setting.secret or isinstance(exc, Unshown) else f" {short!r}"
        raise SettingsError(f"{setting.name}{shown} from {origin} is not valid: {exc}") from None
