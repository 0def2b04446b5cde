"""The README's compatibility table says what the suite runs: its rows and the tests' own lists
(server majors, drivers, Pythons, dependency floors) must agree, so neither drifts alone."""

from __future__ import annotations

import re
import sys
import tomllib

from tests.conftest import REPO
from tests.servers import MAJORS
from tests.test_distribution import NEWER_PYTHONS
from tests.test_drivers import DRIVERS


def table() -> dict[str, str]:
    """The README's compatibility table: each row's "supported" cell, by its first cell."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Compatibility\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("what", "---"):
            rows[cells[0]] = cells[1]
    return rows


def listed(cell: str) -> list[str]:
    return [item.strip() for item in cell.split(",")]


def test_the_server_majors_are_the_matrixs() -> None:
    assert listed(table()["PostgreSQL servers"]) == [str(major) for major in MAJORS]


def test_the_drivers_are_the_driver_tests() -> None:
    assert listed(table()["env.py drivers"]) == list(DRIVERS)


def test_the_pythons_are_the_suites_and_the_distribution_tests() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    lowest = pyproject["project"]["requires-python"].removeprefix(">=")
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == lowest  # the suite runs there
    assert listed(table()["Python"]) == [lowest, *NEWER_PYTHONS]


def test_the_floors_are_pyprojects() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared: dict[str, str] = {}
    for requirement in pyproject["dependencies"] + pyproject["optional-dependencies"]["sqlmodel"]:
        found = re.fullmatch(r"([\w.-]+)>=([\w.]+)", requirement)
        assert found, f"{requirement}: a floor, and no other bound"
        declared.setdefault(found[1], found[2])  # the core's floor, where the extra raises one
    cell = table()["dependency floors"].replace("extra `sqlmodel`:", "")
    shown = dict(re.findall(r"([\w.-]+) ([\d.]+)", cell))
    assert shown == declared
