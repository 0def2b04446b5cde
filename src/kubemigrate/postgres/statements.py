"""SQL text split into statements, as psql splits it: at each `;` outside quotes, dollar quotes
and comments, so a function body or a `DO` block stays one statement.

`split(sql)` gives each statement without its `;` and without the comment lines before it (the
`-- Running upgrade ...` lines of Alembic's offline SQL). `E'...'` strings with backslash
escapes are not told apart from standard ones; Alembic never writes them.
"""

from __future__ import annotations

import re

DOLLAR_QUOTE = re.compile(r"\$(?:[A-Za-z_][A-Za-z_0-9]*)?\$")


def split(sql: str) -> list[str]:
    """The statements of `sql`, in order, each stripped of its terminator and leading comments."""
    found: list[str] = []
    start = position = 0
    while position < len(sql):
        skipped = _skip(sql, position)
        if skipped != position:
            position = skipped
        elif sql[position] == ";":
            found.append(sql[start:position])
            start = position = position + 1
        else:
            position += 1
    found.append(sql[start:])
    return [text for text in map(_without_leading_comments, found) if text]


def _skip(sql: str, position: int) -> int:
    """Past the quoted text or comment starting at `position` (`position` itself if none does)."""
    if sql.startswith("--", position):
        end = sql.find("\n", position)
        return len(sql) if end < 0 else end
    if sql.startswith("/*", position):
        end = sql.find("*/", position + 2)
        return len(sql) if end < 0 else end + 2
    if sql[position] in "'\"":
        return _past_quote(sql, position, sql[position])
    tag = DOLLAR_QUOTE.match(sql, position)
    if tag is not None:
        end = sql.find(tag.group(), tag.end())
        return len(sql) if end < 0 else end + len(tag.group())
    return position


def _past_quote(sql: str, position: int, quote: str) -> int:
    """Past the string or identifier opened at `position`; a doubled quote stays inside."""
    position += 1
    while position < len(sql):
        if sql[position] == quote:
            if sql.startswith(quote * 2, position):
                position += 2
                continue
            return position + 1
        position += 1
    return position


def _without_leading_comments(text: str) -> str:
    lines = text.strip().splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "\n".join(lines).strip()
