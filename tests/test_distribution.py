"""kubemigrate as its users get it: the wheel holds the `kubemigrate` package and nothing else at
the top level (the sample application stays in this repository), and it installs and works on
Python 3.12 and 3.13: a fresh virtual environment with the wheel (and its `sqlmodel` extra, which
the sample application needs) migrates the embedded database."""

import glob
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, clean_environ

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.userproject"]


def interpreter(version: str) -> str | None:
    """A Python `version` on this machine (pyenv's, or one on PATH), or None."""
    found = sorted(glob.glob(str(Path.home() / f".pyenv/versions/{version}*/bin/python{version}")))
    for candidate in [*found, shutil.which(f"python{version}") or ""]:
        if (
            candidate
            and subprocess.run([candidate, "--version"], capture_output=True).returncode == 0
        ):
            return candidate
    return None


@pytest.fixture
def wheel(kubemigrate_wheel: Path) -> Path:
    """The session's wheel (tests/userproject.py builds it once)."""
    return kubemigrate_wheel


def test_the_wheel_holds_kubemigrate_alone(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"kubemigrate"}, top
    assert "kubemigrate/tasks/__init__.py" in names


# Python 3.11 runs the whole suite; the newer ones users run install the wheel and migrate.
NEWER_PYTHONS = ("3.12", "3.13")


@pytest.mark.parametrize("version", NEWER_PYTHONS)
def test_installs_and_migrates_on_a_newer_python(wheel: Path, tmp_path: Path, version: str) -> None:
    python = interpreter(version)
    if python is None:
        pytest.skip(f"no Python {version} on this machine")
    uv = shutil.which("uv")
    assert uv is not None
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", python, str(venv)], check=True, timeout=120)
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(venv / "bin" / "python"),
            f"kubemigrate[sqlmodel] @ {wheel.as_uri()}",  # the sample application's SQLModel
        ],
        check=True,
        timeout=600,
    )
    project = tmp_path / "project"
    project.mkdir()
    for name in ("alembic.ini", "tasks.py"):
        shutil.copy(REPO / name, project / name)
    shutil.copytree(REPO / "migrations", project / "migrations", ignore=_caches)
    shutil.copytree(REPO / "src" / "app", project / "src" / "app", ignore=_caches)

    def inv(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(venv / "bin" / "python"), "-m", "invoke", *argv],
            cwd=project,
            env=clean_environ(),
            capture_output=True,
            text=True,
            timeout=180,
        )

    try:
        absent = inv("--list")
        assert absent.returncode == 0, absent.stderr
        no_app = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import app"], capture_output=True, cwd=tmp_path
        )
        assert no_app.returncode != 0, "the wheel installed a top-level app package"
        upgraded = inv("db.upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        assert "PostgreSQL created and started" in upgraded.stderr
        current = inv("db.current")
        assert current.returncode == 0 and "(head)" in current.stdout, current.stderr
    finally:
        inv("dev.db", "--stop")


def _caches(directory: str, names: list[str]) -> list[str]:
    return [name for name in names if name == "__pycache__"]
