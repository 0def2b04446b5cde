"""Sizes and ages as people read them, one way everywhere: a backup's size and how fast it is
written, a table's size in the plan, how old a backup or a migration Job is."""

from __future__ import annotations

SIZE_UNITS = ("kB", "MB", "GB", "TB")  # decimal, as `du --si` and `df -H` print them
AGE_UNITS = (("d", 86400), ("h", 3600), ("m", 60))


def size(count: float) -> str:
    """A number of bytes: 999 -> '999 B', 1234567 -> '1.2 MB'."""
    if count < 1000:
        return f"{int(count)} B"
    value = float(count)
    for unit in SIZE_UNITS:
        value /= 1000
        if value < 1000 or unit == SIZE_UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def age(seconds: float) -> str:
    """A duration in its two largest units: '2d 4h', '3h 12m', '5m', '42s'."""
    left = max(0, int(seconds))
    for index, (unit, length) in enumerate(AGE_UNITS):
        if left >= length:
            whole, left = divmod(left, length)
            if index + 1 < len(AGE_UNITS):
                next_unit, next_length = AGE_UNITS[index + 1]
                return f"{whole}{unit} {left // next_length}{next_unit}"
            return f"{whole}{unit}"
    return f"{left}s"
