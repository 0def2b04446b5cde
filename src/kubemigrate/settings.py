"""Typed settings, and where each value came from.

Settings are read in this order, later wins:

1. the defaults below;
2. `.env` in the project directory;
3. `.env.<environment>` for the chosen environment (`--env NAME` or `KUBEMIGRATE_ENV`);
4. the process environment;
5. task options.

Only names starting with `KUBEMIGRATE_`, plus `DATABASE_URL`, are ours. A `.env` file usually
serves the application too, so its other names are left alone; an unknown `KUBEMIGRATE_` name is
an error (most likely a typo), and so is a malformed value. Both name the setting and the file it
came from, and never echo a value, which may be a password.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from kubemigrate.errors import SettingsError

PREFIX = "KUBEMIGRATE_"
TARGETS = ("local", "k8s", "external")


def _text(value: str) -> str:
    return value.strip()


def _optional(value: str) -> str | None:
    return value.strip() or None


def _port(value: str) -> int:
    number = int(value)
    if not 0 < number < 65536:
        raise ValueError("not a port")
    return number


def _seconds(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError("not positive")
    return number


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("negative")
    return number


def _names(value: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in value.split(",") if name.strip())


def _seconds_or_off(value: str) -> float:
    number = float(value)
    if number < 0:
        raise ValueError("negative")
    return number


def _flag(value: str) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _target(value: str) -> str:
    if value not in TARGETS:
        raise ValueError(f"must be one of {', '.join(TARGETS)}")
    return value


def _environment(value: str) -> str:
    if not value or not all(ch.isalnum() or ch in "-_" for ch in value):
        raise ValueError("use letters, digits, '-' and '_'")
    return value


@dataclass(frozen=True)
class Setting:
    """One setting: its variable name, the attribute it fills, and how to read it."""

    name: str
    attr: str
    default: str
    parse: Callable[[str], Any]
    help: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "KUBEMIGRATE_ENV",
        "environment",
        "local",
        _environment,
        "Environment name; selects the file .env.<name> (same as --env).",
    ),
    Setting(
        "KUBEMIGRATE_TARGET",
        "target",
        "local",
        _target,
        "Where the database is: local (embedded or DATABASE_URL), k8s (in the cluster, "
        "through kubectl port-forward) or external (reached directly).",
    ),
    Setting(
        "DATABASE_URL",
        "database_url",
        "",
        _optional,
        "Full SQLAlchemy/PostgreSQL URL; wins over the KUBEMIGRATE_DB_* parts and the Secret.",
        secret=True,
    ),
    Setting(
        "KUBEMIGRATE_DB_HOST",
        "db_host",
        "",
        _optional,
        "Database host, when DATABASE_URL is not set.",
    ),
    Setting("KUBEMIGRATE_DB_PORT", "db_port", "5432", _port, "Database port."),
    Setting("KUBEMIGRATE_DB_USER", "db_user", "", _optional, "Database user."),
    Setting(
        "KUBEMIGRATE_DB_PASSWORD",
        "db_password",
        "",
        _optional,
        "Database password (prefer a Kubernetes Secret or DATABASE_URL in an untracked .env).",
        secret=True,
    ),
    Setting("KUBEMIGRATE_DB_NAME", "db_name", "app", _text, "Database name."),
    Setting(
        "KUBEMIGRATE_CONNECT_TIMEOUT",
        "connect_timeout",
        "10",
        _seconds,
        "Seconds to wait for a database connection before failing.",
    ),
    Setting(
        "KUBEMIGRATE_DATA_DIR",
        "data_dir",
        ".kubemigrate/pgdata",
        _text,
        "Data directory of the embedded PostgreSQL (relative to the project).",
    ),
    Setting(
        "KUBEMIGRATE_MIGRATIONS_CONFIG",
        "alembic_ini",
        "alembic.ini",
        _text,
        "Alembic configuration file (relative to the project).",
    ),
    Setting(
        "KUBEMIGRATE_KUBECTL",
        "kubectl",
        "kubectl",
        _text,
        "kubectl binary to run (a name on PATH or a path).",
    ),
    Setting(
        "KUBEMIGRATE_KUBECONFIG",
        "kubeconfig",
        "",
        _optional,
        "kubeconfig file; empty means kubectl's own default (KUBECONFIG or ~/.kube/config).",
    ),
    Setting(
        "KUBEMIGRATE_KUBE_CONTEXT",
        "kube_context",
        "",
        _optional,
        "kubectl context; empty means the kubeconfig's current context.",
    ),
    Setting(
        "KUBEMIGRATE_NAMESPACE",
        "namespace",
        "default",
        _text,
        "Namespace of the database and its Secret.",
    ),
    Setting(
        "KUBEMIGRATE_DB_SERVICE",
        "db_service",
        "postgres",
        _optional,
        "Service in front of the bundled PostgreSQL (port-forward svc/NAME).",
    ),
    Setting(
        "KUBEMIGRATE_DB_SELECTOR",
        "db_selector",
        "",
        _optional,
        "Label selector of the PostgreSQL pod, used instead of the Service when set "
        "(e.g. app=postgres).",
    ),
    Setting(
        "KUBEMIGRATE_DB_REMOTE_PORT",
        "db_remote_port",
        "5432",
        _port,
        "Port of PostgreSQL on the Service or pod.",
    ),
    Setting(
        "KUBEMIGRATE_DB_SECRET",
        "db_secret",
        "",
        _optional,
        "Secret holding the database credentials; empty means none is read.",
    ),
    Setting(
        "KUBEMIGRATE_SECRET_URL_KEY",
        "secret_url_key",
        "",
        _optional,
        "Key of the Secret holding a full database URL; when set the other keys are unused.",
    ),
    Setting(
        "KUBEMIGRATE_SECRET_USER_KEY",
        "secret_user_key",
        "username",
        _text,
        "Key of the Secret holding the user name.",
    ),
    Setting(
        "KUBEMIGRATE_SECRET_PASSWORD_KEY",
        "secret_password_key",
        "password",
        _text,
        "Key of the Secret holding the password.",
    ),
    Setting(
        "KUBEMIGRATE_SECRET_DATABASE_KEY",
        "secret_database_key",
        "database",
        _text,
        "Key of the Secret holding the database name (optional in the Secret).",
    ),
    Setting(
        "KUBEMIGRATE_SECRET_HOST_KEY",
        "secret_host_key",
        "host",
        _text,
        "Key of the Secret holding the host, for the external target (optional).",
    ),
    Setting(
        "KUBEMIGRATE_SECRET_PORT_KEY",
        "secret_port_key",
        "port",
        _text,
        "Key of the Secret holding the port, for the external target (optional).",
    ),
    Setting(
        "KUBEMIGRATE_DB_CONTAINER",
        "db_container",
        "",
        _optional,
        "Container of the database pod in which pg_dump/pg_restore run; empty: the pod's default.",
    ),
    Setting(
        "KUBEMIGRATE_BACKUP_DIR",
        "backup_dir",
        "backups",
        _text,
        "Directory of backups (relative to the project); files go to <dir>/<environment>/.",
    ),
    Setting(
        "KUBEMIGRATE_BACKUP_KEEP",
        "backup_keep",
        "0",
        _count,
        "Keep only the newest N backups per environment and database (0: keep all).",
    ),
    Setting(
        "KUBEMIGRATE_MANIFESTS",
        "manifests",
        "k8s",
        _text,
        "Kustomize directory `inv deploy` applies (kubectl apply -k), relative to the project.",
    ),
    Setting(
        "KUBEMIGRATE_DEPLOYMENTS",
        "deployments",
        "web",
        _names,
        "Comma-separated Deployments whose rollout `inv deploy` waits for.",
    ),
    Setting(
        "KUBEMIGRATE_ROLLOUT_TIMEOUT",
        "rollout_timeout",
        "300",
        _seconds,
        "Seconds `inv deploy` waits for each rollout.",
    ),
    Setting(
        "KUBEMIGRATE_LOCK_WAIT",
        "lock_wait",
        "60",
        _seconds,
        "Seconds a migration waits for another one on the same database to finish.",
    ),
    Setting(
        "KUBEMIGRATE_LOCK_TIMEOUT",
        "lock_timeout",
        "5",
        _seconds_or_off,
        "PostgreSQL lock_timeout of migration sessions, in seconds (0: none): a migration "
        "queued behind the application's locks fails instead of blocking it.",
    ),
    Setting(
        "KUBEMIGRATE_STATEMENT_TIMEOUT",
        "statement_timeout",
        "300",
        _seconds_or_off,
        "PostgreSQL statement_timeout of migration sessions, in seconds (0: none).",
    ),
    Setting(
        "KUBEMIGRATE_PROTECTED",
        "protected",
        "false",
        _flag,
        "true for environments like production: downgrade, stamp, restore and merge ask for "
        "confirmation (--yes in pipelines), and upgrade runs `db.lint` first.",
    ),
    Setting(
        "KUBEMIGRATE_LINT_EXCLUDE",
        "lint_exclude",
        "prefer-robust-stmts,prefer-bigint-over-int,prefer-bigint-over-smallint,"
        "prefer-identity,prefer-text-field,prefer-timestamptz",
        _names,
        "squawk rules `db.lint` leaves out (style rather than safety).",
    ),
    Setting(
        "KUBEMIGRATE_TUNNEL_TIMEOUT",
        "tunnel_timeout",
        "30",
        _seconds,
        "Seconds to wait for kubectl port-forward to be ready.",
    ),
)

BY_NAME = {s.name: s for s in SETTINGS}
BY_ATTR = {s.attr: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Every setting kubemigrate reads, typed, plus where each value came from."""

    project_dir: Path
    environment: str
    target: str
    database_url: str | None
    db_host: str | None
    db_port: int
    db_user: str | None
    db_password: str | None = field(repr=False)
    db_name: str
    connect_timeout: float
    data_dir: str
    alembic_ini: str
    kubectl: str
    kubeconfig: str | None
    kube_context: str | None
    namespace: str
    db_service: str | None
    db_selector: str | None
    db_remote_port: int
    db_secret: str | None
    secret_url_key: str | None
    secret_user_key: str
    secret_password_key: str
    secret_database_key: str
    secret_host_key: str
    secret_port_key: str
    db_container: str | None
    backup_dir: str
    backup_keep: int
    manifests: str
    deployments: tuple[str, ...]
    rollout_timeout: float
    lock_wait: float
    lock_timeout: float
    statement_timeout: float
    protected: bool
    lint_exclude: tuple[str, ...]
    tunnel_timeout: float
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={'***' if _is_secret(f.name) else getattr(self, f.name)!r}"
            for f in fields(self)
            if f.name != "sources"
        )
        return f"Settings({shown})"

    def path(self, value: str) -> Path:
        """A path setting, resolved against the project directory."""
        return (self.project_dir / value).resolve()

    def source(self, attr: str) -> str:
        """Where the value of `attr` came from: default, a file name, environment or option."""
        return self.sources.get(attr, "default")


def _is_secret(attr: str) -> bool:
    setting = BY_ATTR.get(attr)
    return bool(setting and setting.secret)


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
    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    with path.open(encoding="utf-8") as stream:
        for binding in parse_stream(stream):
            if binding.error:
                raise SettingsError(
                    f"{path.name}, line {binding.original.line}: cannot parse this line; "
                    "write NAME=value (quote values with spaces or #)"
                )
    values = dotenv_values(path, interpolate=True)
    return {key: value for key, value in values.items() if value is not None}


def _ours(name: str) -> bool:
    return name.startswith(PREFIX) or name == "DATABASE_URL"


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
    return layer


def load_settings(
    environment: str | None = None,
    *,
    project_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> Settings:
    """Read the settings for `environment` (None: `KUBEMIGRATE_ENV`, then `.env`, then local).

    `options` maps attribute names (`namespace`, `target`...) to values given on the command
    line; None values are ignored.
    """
    project = (project_dir or find_project_dir()).resolve()
    env = os.environ if environ is None else environ

    base_file = project / ".env"
    raw: dict[str, tuple[str, str]] = {}
    if base_file.is_file():
        raw.update(_layer(read_env_file(base_file), ".env"))
    process = _layer(env, "the environment")

    env_setting = BY_NAME["KUBEMIGRATE_ENV"]
    if environment:
        chosen, origin = environment, "--env"
    else:
        chosen, origin = process.get("KUBEMIGRATE_ENV") or raw.get(
            "KUBEMIGRATE_ENV", (env_setting.default, "default")
        )
    chosen = _parse(env_setting, chosen, origin)

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
    for setting in SETTINGS:
        text, origin = raw.get(setting.name, (setting.default, "default"))
        values[setting.attr] = _parse(setting, text, origin)
        sources[setting.attr] = origin
    for attr, value in (options or {}).items():
        if value is None:
            continue
        setting = BY_ATTR[attr]
        values[attr] = _parse(setting, str(value), "the command line")
        sources[attr] = "option"
    return Settings(project_dir=project, sources=sources, **values)


def _parse(setting: Setting, text: str, origin: str) -> Any:
    try:
        return setting.parse(text)
    except ValueError as exc:
        shown = "" if setting.secret else f" {text!r}"
        reason = str(exc) if setting.parse in (_target, _environment, _flag) else _expected(setting)
        raise SettingsError(f"{setting.name}{shown} from {origin} is not valid: {reason}") from None


def _expected(setting: Setting) -> str:
    if setting.parse is _port:
        return "expected a port number (1-65535)"
    if setting.parse is _seconds:
        return "expected a positive number of seconds"
    if setting.parse is _seconds_or_off:
        return "expected a number of seconds, 0 or more"
    if setting.parse is _count:
        return "expected a whole number, 0 or more"
    return "malformed value"
