"""Unit tests of settings: the order of sources, and errors that name setting and file."""

from dataclasses import fields, replace
from pathlib import Path

import pytest

from kubemigrate.errors import SettingsError
from kubemigrate.postgres.urls import parse_url, url_from_parts
from kubemigrate.settings.declared import BY_NAME, SETTINGS, Settings
from kubemigrate.settings.sources import load_settings, parse

SECRET = "p@ss:w/o%rd 'q\" #x"


def load(tmp_path: Path, env: str | None = None, environ: dict[str, str] | None = None):
    return load_settings(env, project_dir=tmp_path, environ=environ or {})


def test_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path)
    assert settings.environment == "local"
    assert settings.target == "local"
    assert settings.database_url is None
    assert settings.namespace == "default"
    assert settings.db_remote_port == 5432
    assert settings.source("namespace") == "default"


def test_later_sources_win(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "KUBEMIGRATE_NAMESPACE=from-env\nKUBEMIGRATE_DB_NAME=base\n"
        "KUBEMIGRATE_DB_SERVICE=pg\nAPP_DEBUG=1\n"
    )
    (tmp_path / ".env.staging").write_text(
        "KUBEMIGRATE_NAMESPACE=staging\nKUBEMIGRATE_DB_SERVICE=pg-staging\n"
    )
    settings = load(tmp_path, "staging", {"KUBEMIGRATE_DB_SERVICE": "pg-process"})
    assert settings.environment == "staging"
    assert settings.db_name == "base"
    assert settings.source("db_name") == ".env"
    assert settings.db_service == "pg-process"
    assert settings.source("db_service") == "the environment"
    assert settings.namespace == "staging"
    assert settings.source("namespace") == ".env.staging"


def test_environment_chosen_by_variable_or_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("KUBEMIGRATE_ENV=staging\n")
    (tmp_path / ".env.staging").write_text("KUBEMIGRATE_TARGET=k8s\n")
    (tmp_path / ".env.prod").write_text("KUBEMIGRATE_TARGET=external\n")
    assert load(tmp_path).target == "k8s"
    assert load(tmp_path, environ={"KUBEMIGRATE_ENV": "prod"}).target == "external"
    assert load(tmp_path, "prod").environment == "prod"


def test_unknown_environment(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"unknown environment 'prod'.*\.env\.prod"):
        load(tmp_path, "prod")


def test_unknown_setting_names_the_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("KUBEMIGRATE_NAMESPAC=x\n")
    with pytest.raises(SettingsError, match=r"unknown setting KUBEMIGRATE_NAMESPAC in \.env"):
        load(tmp_path)
    with pytest.raises(SettingsError, match="in the environment"):
        load_settings(project_dir=tmp_path / "none", environ={"KUBEMIGRATE_TARGT": "k8s"})


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ("KUBEMIGRATE_DB_PORT=fifty", r"KUBEMIGRATE_DB_PORT 'fifty' from \.env\.staging .*port"),
        ("KUBEMIGRATE_TARGET=kube", r"KUBEMIGRATE_TARGET 'kube' from \.env\.staging.*k8s"),
        (
            "KUBEMIGRATE_CONNECT_TIMEOUT=-1",
            r"KUBEMIGRATE_CONNECT_TIMEOUT .*seconds from 0\.001 to 86400",
        ),
    ],
)
def test_malformed_value_names_setting_and_file(tmp_path: Path, line: str, pattern: str) -> None:
    (tmp_path / ".env.staging").write_text(line + "\n")
    with pytest.raises(SettingsError, match=pattern):
        load(tmp_path, "staging")


def test_every_setting_is_a_field_and_every_field_a_setting() -> None:
    declared = [
        f.name for f in fields(Settings) if f.name not in ("project_dir", "sources", "texts")
    ]
    assert [s.attr for s in SETTINGS] == declared
    assert len({s.name for s in SETTINGS}) == len(SETTINGS)


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("KUBEMIGRATE_DB_PORT", "fifty", "expected a port number from 1 to 65535"),
        ("KUBEMIGRATE_DB_REMOTE_PORT", "65536", "expected a port number from 1 to 65535"),
        (
            "KUBEMIGRATE_CONNECT_TIMEOUT",
            "soon",
            "expected a number of seconds from 0.001 to 86400 (24 h)",
        ),
        (
            "KUBEMIGRATE_ROLLOUT_TIMEOUT",
            "0",
            "expected a number of seconds from 0.001 to 86400 (24 h)",
        ),
        (
            "KUBEMIGRATE_LOCK_TIMEOUT",
            "-1",
            "expected a number of seconds from 0.001 to 86400 (24 h), or 0 for none",
        ),
        (
            "KUBEMIGRATE_STATEMENT_TIMEOUT",
            "off",
            "expected a number of seconds from 0.001 to 86400 (24 h), or 0 for none",
        ),
        ("KUBEMIGRATE_BACKUP_KEEP", "-3", "expected a whole number from 0 to 100000"),
        ("KUBEMIGRATE_BACKUP_KEEP", "2.5", "expected a whole number from 0 to 100000"),
        ("KUBEMIGRATE_TARGET", "kube", "must be one of local, k8s, external"),
        ("KUBEMIGRATE_ENV", "prod/eu", "use letters, digits, '-' and '_'"),
        ("KUBEMIGRATE_PROTECTED", "maybe", "expected true or false"),
    ],
)
def test_malformed_value_of_each_kind_gives_its_reason(
    tmp_path: Path, name: str, text: str, reason: str
) -> None:
    with pytest.raises(SettingsError) as info:
        load(tmp_path, environ={name: text})
    assert str(info.value) == f"{name} {text!r} from the environment is not valid: {reason}"


def test_malformed_secret_is_not_echoed() -> None:
    """No secret setting can be malformed today; check `_parse` with a secret port."""
    secret_port = replace(BY_NAME["KUBEMIGRATE_DB_PORT"], secret=True)
    with pytest.raises(SettingsError) as info:
        parse(secret_port, SECRET, ".env")
    assert str(info.value) == (
        "KUBEMIGRATE_DB_PORT from .env is not valid: expected a port number from 1 to 65535"
    )


def test_malformed_line_names_file_and_line_not_its_text(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "KUBEMIGRATE_DB_NAME=app\nDATABASE_URL='postgresql://u:hunter2\n"
    )
    with pytest.raises(SettingsError) as info:
        load(tmp_path)
    assert ".env, line 2" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_each_value_keeps_the_text_it_was_read_from(tmp_path: Path) -> None:
    export = "POSTGRES_SERVER={host},POSTGRES_DB={database}"
    settings = load(
        tmp_path, environ={"KUBEMIGRATE_EXPORT": export, "KUBEMIGRATE_LOCK_TIMEOUT": "7"}
    )
    assert settings.text("export") == export and settings.export != export
    assert settings.text("lock_timeout") == "7" and settings.lock_timeout == 7.0
    assert settings.text("namespace") == "default"


def test_secrets_stay_out_of_repr(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        environ={"KUBEMIGRATE_DB_PASSWORD": SECRET, "DATABASE_URL": f"postgresql://u:{SECRET}@h/d"},
    )
    assert SECRET not in repr(settings)
    assert "***" in repr(settings)


def test_quoted_password_in_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("KUBEMIGRATE_DB_PASSWORD='p@ss:w/o%rd \\'q\" #x'\n")
    assert load(tmp_path).db_password == SECRET


def test_env_example_is_current() -> None:
    """Every setting is documented; regenerate with scripts/write_env_example.py."""
    from scripts.write_env_example import ROOT, env_example

    assert (ROOT / ".env.example").read_text() == env_example()
    for setting in SETTINGS:
        assert f"# {setting.name}=" in env_example()


def test_url_from_parts_keeps_any_password() -> None:
    url = url_from_parts(host="127.0.0.1", port=5432, user="app", password=SECRET, database="d")
    text = url.render_as_string(hide_password=False)
    assert parse_url(text, "test").password == SECRET
    assert SECRET not in url.render_as_string(hide_password=True)


def test_parse_url_normalizes_and_refuses() -> None:
    assert parse_url("postgres://u:p@h:1/d", "x").drivername == "postgresql+psycopg2"
    with pytest.raises(SettingsError, match="PostgreSQL only"):
        parse_url("mysql://u:p@h/d", "x")
    with pytest.raises(SettingsError) as info:
        parse_url("not a url hunter2", ".env")
    assert "hunter2" not in str(info.value)
