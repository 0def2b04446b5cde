"""The kinds of value a setting takes: how each reads its text, and its range.

A kind is a callable that reads the text of a value (as a `.env` file holds it) and raises
`ValueError` with the reason shown to the user when the text is malformed; `Unshown` when the
text may hold a password and must not be quoted. Numbers carry their range, which the help of
each setting of the kind shows. The two grammars other layers share live here too: a database
host (`host_problem`, which URLs use) and `KUBEMIGRATE_EXPORT`'s pairs (`parse_exports`).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

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


def text(value: str) -> str:
    """Text, stripped."""
    return value.strip()


def optional(value: str) -> str | None:
    """Text, stripped; empty means None."""
    return value.strip() or None


def names(value: str) -> tuple[str, ...]:
    """Comma-separated names; empty ones are dropped."""
    return tuple(name.strip() for name in value.split(",") if name.strip())


def flag(value: str) -> bool:
    """true/false, yes/no, on/off or 1/0; empty means false."""
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def exports(value: str) -> tuple[tuple[str, str], ...]:
    """KUBEMIGRATE_EXPORT's (NAME, TEMPLATE) pairs."""
    return parse_exports(value)


def runner(value: str) -> str:
    if value not in ("local", "job"):
        raise ValueError("use local or job")
    return value


def words(value: str) -> tuple[str, ...]:
    import shlex

    words = tuple(shlex.split(value))
    if not words:
        raise ValueError("name a command, e.g. python -m kubemigrate")
    return words


def target(value: str) -> str:
    """One of TARGETS."""
    if value not in TARGETS:
        raise ValueError(f"must be one of {', '.join(TARGETS)}")
    return value


def environment(value: str) -> str:
    """An environment name, usable in the file name `.env.<name>`."""
    if not value or not all(ch.isalnum() or ch in "-_" for ch in value):
        raise ValueError("use letters, digits, '-' and '_'")
    return value


def host(value: str) -> str | None:
    """A host name or address (or a socket directory); empty means None. A malformed one is
    not shown: `USER:PASSWORD@HOST` would show the password."""
    host = value.strip()
    problem = host_problem(host) if host else None
    if problem:
        raise Unshown(
            f"{problem}; give the host alone (the user in KUBEMIGRATE_DB_USER, the password "
            "in KUBEMIGRATE_DB_PASSWORD)"
        )
    return host or None


# A host name (letters, digits, '-', '.', '_'; a comma between several), an IPv4 or an IPv6
# address (':' and a zone after '%').
HOST_PATTERN = re.compile(r"[\w.,%:-]+")


def host_problem(host: str) -> str | None:
    """Why `host` cannot be a database host, None when it can (a socket directory, an absolute
    path, can); the reason never quotes it (it may hold a password, as `PASSWORD@HOST` does)."""
    if host.startswith("/"):
        return None
    if "@" in host:
        return "a host holds no '@' (is a user or password in it?)"
    if not HOST_PATTERN.fullmatch(host):
        return "a host is a name or an address (letters, digits, '-', '.', ':')"
    return None


EXPORT_FIELDS = ("url", "host", "port", "user", "password", "database")
EXPORT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_EXPORT = "DATABASE_URL={url}"


def parse_exports(text: str) -> tuple[tuple[str, str], ...]:
    """The (NAME, TEMPLATE) pairs of a KUBEMIGRATE_EXPORT value; ValueError says what is wrong."""
    pairs: list[tuple[str, str]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, equals, template = item.partition("=")
        name = name.strip()
        if not equals or not EXPORT_NAME.match(name):
            raise ValueError(f"write NAME=TEMPLATE pairs separated by commas, not {item!r}")
        for _, field, spec, conversion in string.Formatter().parse(template):
            if field is not None and (field not in EXPORT_FIELDS or spec or conversion):
                raise ValueError(
                    f"{name}'s template names {{{field}}}; use "
                    + ", ".join(f"{{{f}}}" for f in EXPORT_FIELDS)
                )
        pairs.append((name, template))
    if not pairs:
        raise ValueError(f"name at least one variable, e.g. {DEFAULT_EXPORT}")
    return tuple(pairs)
