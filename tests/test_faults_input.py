"""Faulty input from outside, refused where it enters: settings out of range, a `.env` that is
not UTF-8, a password not percent-encoded in a URL, an empty environment name, and the end of
input at a confirmation prompt.

Each case run as a user types it ends with exit code 1 and one `error:` line, the last of
stderr: no traceback, no password (conftest's, nor the one a case plants) and nothing changed.
"""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from kubemigrate.errors import ClusterError, KubemigrateError, SettingsError
from kubemigrate.postgres.urls import parse_url
from kubemigrate.settings.declared import SETTINGS
from kubemigrate.settings.kinds import Number
from kubemigrate.settings.sources import load_settings
from tests.conftest import PASSWORD, ROLE, Project, Result, Server, clean_environ

# A password that is not percent-encoded: with it a URL reads `...:s3cr@t-pl4nted@host...`.
PLANTED = "s3cr@t-pl4nted"
FRAGMENTS = (PLANTED, "s3cr", "t-pl4nted")


def load(tmp_path: Path, env: str | None = None, **environ: str):
    return load_settings(env, project_dir=tmp_path, environ=environ)


def refused(result: Result, expected: str) -> str:
    """Assert that `result` is one error line, the last of stderr, with `expected` and no
    secret in it; that line."""
    assert result.code == 1, result.output
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == lines[-1:], result.output
    assert expected in errors[0], result.output
    assert "Traceback" not in result.output
    for secret in (PASSWORD, *FRAGMENTS):
        assert secret not in result.output, result.output
    return errors[0]


def state(server: Server, database: str) -> list[tuple[object, ...]]:
    """The database's revision and tables."""
    return server.execute(
        "SELECT (SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables "
        " WHERE schemaname = 'public'), "
        "(SELECT to_regclass('alembic_version') IS NOT NULL)",
        database=database,
    )


# -- settings out of range (unit) ----------------------------------------------------------------

SECONDS = "expected a number of seconds from 0.001 to 86400 (24 h)"
OUT_OF_RANGE = [
    ("KUBEMIGRATE_CONNECT_TIMEOUT", "inf", SECONDS),
    ("KUBEMIGRATE_CONNECT_TIMEOUT", "1e999", SECONDS),
    ("KUBEMIGRATE_CONNECT_TIMEOUT", "nan", SECONDS),
    ("KUBEMIGRATE_CONNECT_TIMEOUT", "0", SECONDS),
    ("KUBEMIGRATE_LOCK_WAIT", "86401", SECONDS),
    ("KUBEMIGRATE_ROLLOUT_TIMEOUT", "-inf", SECONDS),
    ("KUBEMIGRATE_TUNNEL_TIMEOUT", "1e999", SECONDS),
    ("KUBEMIGRATE_JOB_DEADLINE", "1e12", SECONDS),
    ("KUBEMIGRATE_LOCK_TIMEOUT", "99999999", f"{SECONDS}, or 0 for none"),
    ("KUBEMIGRATE_STATEMENT_TIMEOUT", "1e999", f"{SECONDS}, or 0 for none"),
    ("KUBEMIGRATE_STATEMENT_TIMEOUT", "0.0001", f"{SECONDS}, or 0 for none"),
    ("KUBEMIGRATE_JOB_TTL", "inf", "expected a number of seconds from 1 to 2592000 (30 days)"),
    ("KUBEMIGRATE_BACKUP_KEEP", "1e999", "expected a whole number from 0 to 100000"),
    ("KUBEMIGRATE_BACKUP_KEEP", "9" * 30, "expected a whole number from 0 to 100000"),
    ("KUBEMIGRATE_DB_PORT", "0", "expected a port number from 1 to 65535"),
    ("KUBEMIGRATE_DB_REMOTE_PORT", "65536", "expected a port number from 1 to 65535"),
    ("KUBEMIGRATE_JOB_DB_PORT", "70000", "expected a port number from 1 to 65535"),
]


@pytest.mark.parametrize(("name", "text", "reason"), OUT_OF_RANGE)
def test_out_of_range_names_setting_file_and_range(
    tmp_path: Path, name: str, text: str, reason: str
) -> None:
    (tmp_path / ".env.staging").write_text(f"{name}={text}\n")
    with pytest.raises(SettingsError) as info:
        load(tmp_path, "staging")
    shown = text if len(text) <= 40 else text[:37] + "..."
    assert str(info.value) == f"{name} {shown!r} from .env.staging is not valid: {reason}"


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("KUBEMIGRATE_CONNECT_TIMEOUT", "86400", 86400.0),
        ("KUBEMIGRATE_CONNECT_TIMEOUT", "0.001", 0.001),
        ("KUBEMIGRATE_LOCK_TIMEOUT", "0", 0.0),
        ("KUBEMIGRATE_STATEMENT_TIMEOUT", "0", 0.0),
        ("KUBEMIGRATE_BACKUP_KEEP", "0", 0),
        ("KUBEMIGRATE_JOB_TTL", "604800", 604800.0),
        ("KUBEMIGRATE_DB_PORT", "65535", 65535),
        ("KUBEMIGRATE_JOB_DB_PORT", "", None),
    ],
)
def test_the_ends_of_each_range_are_taken(
    tmp_path: Path, name: str, text: str, value: object
) -> None:
    settings = load(tmp_path, **{name: text})
    assert getattr(settings, next(s.attr for s in SETTINGS if s.name == name)) == value


def test_every_ranged_setting_says_its_range_in_its_help() -> None:
    """The help is what .env.example and README's settings table show."""
    ranged = [s for s in SETTINGS if getattr(s.kind, "bounds", None)]
    assert {s.name for s in ranged} >= {
        "KUBEMIGRATE_DB_PORT",
        "KUBEMIGRATE_JOB_DB_PORT",
        "KUBEMIGRATE_BACKUP_KEEP",
        "KUBEMIGRATE_LOCK_TIMEOUT",
    }
    for setting in ranged:
        assert setting.help.endswith(f" Range: {setting.kind.bounds}."), setting.name  # type: ignore[attr-defined]
    for setting in SETTINGS:  # every number is ranged
        if isinstance(setting.kind, Number) or setting.default.replace(".", "").isdigit():
            assert setting in ranged, setting.name


# -- a .env that is not UTF-8 (unit) -------------------------------------------------------------


def test_a_dotenv_not_utf8_names_file_and_line_not_its_bytes(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(
        b"KUBEMIGRATE_DB_NAME=app\n\nKUBEMIGRATE_DB_PASSWORD="
        + PLANTED.encode("latin-1")
        + b"\xe9\xff\n"
    )
    with pytest.raises(SettingsError) as info:
        load(tmp_path)
    assert str(info.value) == ".env, line 3: not UTF-8 text; save the file as UTF-8"


def test_a_dotenv_with_a_byte_order_mark_reads_its_first_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes("KUBEMIGRATE_NAMESPACE=shop\n".encode("utf-8-sig"))
    assert load(tmp_path).namespace == "shop"


def test_a_value_in_the_environment_not_utf8_is_refused_unshown(tmp_path: Path) -> None:
    bad = os.fsdecode(b"shop\xff")
    with pytest.raises(SettingsError) as info:
        load(tmp_path, KUBEMIGRATE_NAMESPACE=bad)
    assert str(info.value) == (
        "KUBEMIGRATE_NAMESPACE from the environment is not valid: its value is not UTF-8 text"
    )


# -- a password not percent-encoded (unit) -------------------------------------------------------

UNENCODED = [
    f"postgresql://app:{PLANTED}@db.example/shop",
    f"postgresql://app:{PLANTED}@db.example:5432/shop",
    f"postgresql://app:{PLANTED}:1@db.example:5432/shop",
    f"postgresql://app:{PASSWORD}@127.0.0.1:5432/shop",
    f"postgresql://app:s3cr/x@{PLANTED}@db.example/shop",
]


@pytest.mark.parametrize("text", UNENCODED)
def test_an_unencoded_password_is_refused_with_a_hint_and_unshown(text: str) -> None:
    with pytest.raises(SettingsError) as info:
        parse_url(text, "DATABASE_URL")
    message = str(info.value)
    assert "percent-encode" in message
    for secret in (PASSWORD, *FRAGMENTS, "s3cr/x"):
        assert secret not in message


@pytest.mark.parametrize(
    "text",
    ["postgresql://app:pw@db example/shop", "postgresql://app:pw@db.example:0/shop"],
)
def test_what_cannot_be_a_host_or_port_is_refused(text: str) -> None:
    with pytest.raises(SettingsError, match="is not a valid URL") as info:
        parse_url(text, "DATABASE_URL")
    assert "pw" not in str(info.value)


@pytest.mark.parametrize(
    "host", ["db.example", "10.0.0.5", "::1", "fe80::1%eth0", "/run/postgresql", "a,b", ""]
)
def test_a_host_setting_takes_names_addresses_and_socket_directories(
    tmp_path: Path, host: str
) -> None:
    assert load(tmp_path, KUBEMIGRATE_DB_HOST=host).db_host == (host or None)


@pytest.mark.parametrize("name", ["KUBEMIGRATE_DB_HOST", "KUBEMIGRATE_JOB_DB_HOST"])
@pytest.mark.parametrize("host", [f"app:{PLANTED}@db.example", f"postgresql://app:{PLANTED}@db"])
def test_a_host_setting_holding_a_password_is_refused_unshown(
    tmp_path: Path, name: str, host: str
) -> None:
    with pytest.raises(SettingsError) as info:
        load(tmp_path, **{name: host})
    message = str(info.value)
    assert message.startswith(f"{name} from the environment is not valid: ")
    assert "KUBEMIGRATE_DB_PASSWORD" in message
    assert not any(secret in message for secret in FRAGMENTS)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"url": f"postgresql://app:{PLANTED}@db/shop"}, "percent-encode"),
        ({"host": f"app:{PLANTED}@db"}, "key 'host' is not a host"),
        ({"port": "70000"}, "key 'port' is not a port (1-65535)"),
        ({"port": "1e999"}, "key 'port' is not a port (1-65535)"),
    ],
)
def test_a_secrets_url_host_and_port_are_checked(
    tmp_path: Path, values: dict[str, str], expected: str
) -> None:
    from kubemigrate.kubernetes.kubectl import Secret
    from kubemigrate.target.credentials import credentials

    environ = {"KUBEMIGRATE_SECRET_URL_KEY": "url"} if "url" in values else {}
    settings = load(tmp_path, **environ)
    secret = Secret("db", {"username": "app", "password": PLANTED, **values}, "namespace shop")
    with pytest.raises((SettingsError, ClusterError)) as info:
        credentials(settings, secret)
    assert expected in str(info.value)
    assert not any(secret in str(info.value) for secret in FRAGMENTS)


# -- an empty environment name (unit) ------------------------------------------------------------


def test_an_empty_env_option_is_an_error_not_local(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load(tmp_path, "")
    assert str(info.value) == (
        "--env is empty; pass an environment name, e.g. --env staging for .env.staging, "
        "or leave --env out for local"
    )


@pytest.mark.parametrize("where", ["the environment", ".env"])
def test_an_empty_kubemigrate_env_is_an_error_not_local(tmp_path: Path, where: str) -> None:
    environ = {"KUBEMIGRATE_ENV": ""} if where == "the environment" else {}
    if where == ".env":
        (tmp_path / ".env").write_text("KUBEMIGRATE_ENV=\n")
    with pytest.raises(SettingsError, match=rf"^KUBEMIGRATE_ENV \(from {where}\) is empty; "):
        load(tmp_path, **environ)


# -- the end of input at a prompt (unit, with a fake terminal) -----------------------------------


class FakeTerminal(io.StringIO):
    """Standard input that claims to be a terminal; `error` is raised on reading."""

    def __init__(self, text: str = "", error: BaseException | None = None) -> None:
        super().__init__(text)
        self.error = error

    def isatty(self) -> bool:
        super().isatty()  # ValueError once closed, as a real file's
        return True

    def readline(self, size: int = -1, /) -> str:  # type: ignore[override]
        if self.error is not None:
            raise self.error
        return super().readline(size)


@pytest.mark.parametrize(
    ("stdin", "expected"),
    [
        (FakeTerminal("y\n"), True),
        (FakeTerminal("yes\n"), True),
        (FakeTerminal("\n"), False),
        (FakeTerminal(""), False),  # Ctrl-D: end of input
        (FakeTerminal(error=OSError(5, "Input/output error")), False),  # the terminal went away
    ],
)
def test_end_of_input_at_the_prompt_is_no(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], stdin, expected: bool
) -> None:
    from kubemigrate.tasks.common import confirmation

    monkeypatch.setattr(sys, "stdin", stdin)
    assert confirmation(False)("Stamp prod as base?") is expected
    shown = capsys.readouterr()
    assert shown.err.startswith("Stamp prod as base? [y/N] ") and shown.out == ""
    if stdin.getvalue() == "":  # nothing typed: the prompt's line is ended for the error
        assert shown.err.endswith("[y/N] \n")


@pytest.mark.parametrize("stdin", [None, "closed"])
def test_no_standard_input_is_no_terminal(monkeypatch: pytest.MonkeyPatch, stdin) -> None:
    from kubemigrate.tasks.common import confirmation

    if stdin == "closed":
        stdin = FakeTerminal()
        stdin.close()
    monkeypatch.setattr(sys, "stdin", stdin)
    with pytest.raises(KubemigrateError, match="no terminal to ask on; pass --yes"):
        confirmation(False)("Stamp prod as base?")


def test_end_of_input_cancels_a_protected_task(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubemigrate.tasks.common import confirm_if_protected

    monkeypatch.setattr(sys, "stdin", FakeTerminal(""))
    settings = load_settings(project_dir=Path("/nonexistent"), environ={})
    with pytest.raises(KubemigrateError, match=r"^cancelled; nothing was changed$"):
        confirm_if_protected(replace(settings, protected=True), "Stamp local?", yes=False)


# -- end to end ----------------------------------------------------------------------------------


def not_utf8_dotenv(project: Project) -> None:
    (project.root / ".env").write_bytes(
        b"KUBEMIGRATE_DB_NAME=app\nKUBEMIGRATE_DB_PASSWORD=" + PLANTED.encode() + b"\xff\n"
    )


def in_file(name: str, **values: str) -> Callable[[Project], None]:
    def arrange(project: Project) -> None:
        (project.root / name).write_text("".join(f"{k}={v}\n" for k, v in values.items()))

    return arrange


@dataclass
class Case:
    argv: list[str]
    expected: str
    env: dict[str, str] = field(default_factory=dict)
    setup: Callable[[Project], None] | None = None
    unencoded_url: bool = False  # DATABASE_URL with the planted password, not percent-encoded


UPGRADE = ["db.upgrade"]
CASES = {
    "connect timeout inf": Case(
        UPGRADE,
        "KUBEMIGRATE_CONNECT_TIMEOUT 'inf' from the environment",
        {"KUBEMIGRATE_CONNECT_TIMEOUT": "inf"},
    ),
    "statement timeout 1e999 in .env": Case(
        UPGRADE,
        "KUBEMIGRATE_STATEMENT_TIMEOUT '1e999' from .env is not valid: expected a number of "
        "seconds from 0.001 to 86400",
        setup=in_file(".env", KUBEMIGRATE_STATEMENT_TIMEOUT="1e999"),
    ),
    "lock timeout beyond PostgreSQL's": Case(
        ["db.upgrade", "--env", "prod"],
        "KUBEMIGRATE_LOCK_TIMEOUT '99999999' from .env.prod",
        setup=in_file(".env.prod", KUBEMIGRATE_LOCK_TIMEOUT="99999999"),
    ),
    "backup keep too many": Case(
        ["db.backup"], "KUBEMIGRATE_BACKUP_KEEP '1e999'", {"KUBEMIGRATE_BACKUP_KEEP": "1e999"}
    ),
    "port 0": Case(UPGRADE, "expected a port number from 1 to 65535", {"KUBEMIGRATE_DB_PORT": "0"}),
    ".env not UTF-8": Case(UPGRADE, ".env, line 2: not UTF-8 text", setup=not_utf8_dotenv),
    "password with @ in DATABASE_URL": Case(UPGRADE, "percent-encode", unencoded_url=True),
    "conftest's password unencoded": Case(UPGRADE, "percent-encode"),
    "host setting with a password": Case(
        UPGRADE,
        "KUBEMIGRATE_DB_HOST from the environment is not valid",
        {"KUBEMIGRATE_DB_HOST": f"{ROLE}:{PLANTED}@127.0.0.1"},
    ),
    "--env empty": Case(["db.upgrade", "--env", ""], "error: --env is empty"),
    "KUBEMIGRATE_ENV empty": Case(
        UPGRADE, "KUBEMIGRATE_ENV (from the environment) is empty", {"KUBEMIGRATE_ENV": ""}
    ),
}


@pytest.mark.e2e
@pytest.mark.parametrize("name", list(CASES))
def test_faulty_input_end_to_end(
    name: str, project: Project, pg_server: Server, database: str
) -> None:
    case = CASES[name]
    if case.setup is not None:
        case.setup(project)
    if case.unencoded_url:
        project.env["DATABASE_URL"] = (
            f"postgresql://{ROLE}:{PLANTED}@127.0.0.1:{pg_server.port}/{database}"
        )
    elif name == "conftest's password unencoded":
        project.env["DATABASE_URL"] = (
            f"postgresql://{ROLE}:{PASSWORD}@127.0.0.1:{pg_server.port}/{database}"
        )
    before = state(pg_server, database)
    refused(project.inv(*case.argv, **case.env), case.expected)
    assert state(pg_server, database) == before


# -- Ctrl-D at each confirmation, on a terminal --------------------------------------------------


def on_terminal(project: Project, *argv: str, keys: bytes | None = b"\x04") -> Result:
    """Run `inv ARGV` with a pseudo-terminal as standard input and output (stderr piped); once
    the prompt shows, type `keys` (Ctrl-D), or with None close the terminal (its reads then
    fail). What it printed on the terminal is its stdout."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", *argv],
        cwd=project.root,
        env=clean_environ(**project.env),
        stdin=slave,
        stdout=slave,
        stderr=subprocess.PIPE,
    )
    os.close(slave)
    assert proc.stderr is not None
    err = proc.stderr.fileno()
    shown = {master: b"", err: b""}
    try:
        deadline = time.monotonic() + 60
        while b"[y/N]" not in shown[err] and time.monotonic() < deadline:
            for fd in select.select(list(shown), [], [], 0.2)[0]:
                shown[fd] += _read(fd)
            if proc.poll() is not None:
                break
        if b"[y/N]" in shown[err] and keys is not None:
            os.write(master, keys)
        elif b"[y/N]" in shown[err]:
            os.close(master)
            del shown[master]
            master = -1
        proc.wait(timeout=60)
        for fd in shown:
            while select.select([fd], [], [], 0)[0] and (chunk := _read(fd)):
                shown[fd] += chunk
    finally:
        if master >= 0:
            os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    out, errors = (shown.get(fd, b"").decode(errors="replace") for fd in (master, err))
    return Result(proc.returncode, out, errors)


def _read(fd: int) -> bytes:
    """What `fd` has to read; nothing once its writer closed it (a pty's master gives EIO)."""
    try:
        return os.read(fd, 4096)
    except OSError:
        return b""


def versions(project: Project) -> list[str]:
    return sorted(path.name for path in project.versions.glob("*.py"))


CTRL_D = b"\x04"
PROMPTS = {
    "downgrade": (["db.downgrade", "-1"], "Downgrade local to -1?", "cancelled", CTRL_D),
    "stamp": (["db.stamp", "base"], "Stamp local as base?", "cancelled", CTRL_D),
    "merge": (["db.merge", "-m", "join"], "Merge the heads for local?", "cancelled", CTRL_D),
    "restore": (["db.restore", "BACKUP"], "with ", "restore cancelled", CTRL_D),
    "stamp, terminal gone": (["db.stamp", "base"], "Stamp local as base?", "cancelled", None),
}


@pytest.mark.e2e
@pytest.mark.parametrize("name", list(PROMPTS))
def test_ctrl_d_at_the_prompt_cancels(
    name: str, project: Project, pg_server: Server, database: str
) -> None:
    argv, question, expected, keys = PROMPTS[name]
    assert project.inv("db.upgrade").code == 0
    if name == "restore":
        made = project.inv("db.backup")
        assert made.code == 0, made.output
        argv = [made.stdout.strip().splitlines()[-1] if a == "BACKUP" else a for a in argv]
        assert project.inv("db.downgrade", "-1").code == 0  # a restore would bring it back
    project.env["KUBEMIGRATE_PROTECTED"] = "true"
    before, files = state(pg_server, database), versions(project)
    result = on_terminal(project, *argv, keys=keys)
    assert f"{question}" in result.stderr and "[y/N] \n" in result.stderr, result.output
    refused(result, f"error: {expected}; nothing was changed")
    assert state(pg_server, database) == before
    assert versions(project) == files
