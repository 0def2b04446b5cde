"""The public surface, what users' files and Job images rely on, named in the package's
`__init__`: `kubemigrate.tasks.namespace`, `kubemigrate.models.discover` and
`python -m kubemigrate`; reaching them imports nothing more than they need."""

import subprocess
import sys

import pytest

import kubemigrate
from kubemigrate.errors import ClusterError
from kubemigrate.models import discover
from kubemigrate.process import programs
from kubemigrate.tasks import namespace
from tests.conftest import REPO


def test_the_package_names_its_public_surface() -> None:
    assert kubemigrate.namespace is namespace
    assert kubemigrate.discover is discover
    assert set(kubemigrate.__all__) == {"__version__", "discover", "namespace"}
    with pytest.raises(AttributeError):
        kubemigrate.children  # noqa: B018


def test_the_models_discovery_imports_neither_invoke_nor_the_tasks() -> None:
    """An application's env.py imports `kubemigrate.models`: it stays light."""
    code = (
        "import sys, kubemigrate.models\n"
        "print(sorted(m for m in sys.modules if m.startswith(('invoke', 'kubemigrate.'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['kubemigrate.errors', 'kubemigrate.models']"


def test_python_m_kubemigrate_shows_its_commands() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kubemigrate", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "upgrade" in done.stdout and "downgrade" in done.stdout and "stamp" in done.stdout


def test_a_missing_program_says_how_to_install_it() -> None:
    with pytest.raises(ClusterError) as raised:
        programs.find(
            "kubectl-not-here", what="kubectl", install="install kubectl", error=ClusterError
        )
    assert (
        str(raised.value) == "kubectl not found: 'kubectl-not-here' is not on PATH; install kubectl"
    )
