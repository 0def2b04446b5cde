"""Sizes and ages as people read them, one way everywhere (`kubemigrate.units`)."""

import pytest

from kubemigrate import units


@pytest.mark.parametrize(
    ("count", "shown"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (2_500_000, "2.5 MB"),
        (3_200_000_000, "3.2 GB"),
        (7 * 10**15, "7000.0 TB"),
    ],
)
def test_a_size_in_decimal_units(count: int, shown: str) -> None:
    assert units.size(count) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-3, "0s"),
        (42, "42s"),
        (5 * 60 + 59, "5m"),
        (3 * 3600 + 12 * 60 + 7, "3h 12m"),
        (2 * 86400 + 4 * 3600 + 59, "2d 4h"),
    ],
)
def test_an_age_in_its_two_largest_units(seconds: float, shown: str) -> None:
    assert units.age(seconds) == shown
