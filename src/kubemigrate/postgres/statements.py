"""SQL text split into statements by PostgreSQL's own scanner (libpg_query, through pglast): at
each `;` outside quotes, dollar quotes and comments, so a function body or a `DO` block stays
one statement.

`split(sql)` gives each statement without its `;` and without the comments before it (the
`-- Running upgrade ...` lines of Alembic's offline SQL). Text the scanner cannot read (an
unterminated quote) is kept whole, as one statement, for the parser to report as unreadable.
"""

from __future__ import annotations

COMMENTS = ("SQL_COMMENT", "C_COMMENT")


def split(sql: str) -> list[str]:
    """The statements of `sql`, in order, each stripped of its terminator and leading comments."""
    from pglast import split as scanned
    from pglast.parser import ParseError

    try:
        pieces = list(scanned(sql, with_parser=False))
    except ParseError:
        pieces = [sql]
    return [text for text in map(_without_leading_comments, pieces) if text]


def _without_leading_comments(statement: str) -> str:
    """`statement` from its first token that is not a comment ("" when it has none)."""
    from pglast.parser import ParseError, scan

    data = statement.encode()  # the scanner's offsets count bytes
    try:
        tokens = scan(statement)
    except ParseError:
        return statement.strip()
    first = next((token for token in tokens if token.name not in COMMENTS), None)
    if first is None:
        return ""
    return data[first.start :].decode().strip().rstrip(";").strip()
