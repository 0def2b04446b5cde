"""ruff and mypy stay clean: they run with the suite, so `uv run pytest` is the whole check."""

import subprocess
import sys

from tests.conftest import REPO


def check(*argv: str) -> None:
    proc = subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_lint() -> None:
    check("ruff", "check", ".")


def test_ruff_format() -> None:
    check("ruff", "format", "--check", ".")


def test_mypy() -> None:
    check("mypy")
