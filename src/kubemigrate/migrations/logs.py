"""Alembic's progress lines on standard error, without its set-up notes: `configure_logging`,
once per process, in the task's process and in the child Alembic process alike."""

from __future__ import annotations

import logging
import sys
import warnings
from typing import TextIO

LOG_FORMAT = "%(levelname)-5.5s [%(name)s] %(message)s"


# Alembic's set-up notes, not progress: kept out of the task's output.
QUIET_LOGGERS = ("alembic.runtime.plugins", "alembic.ddl.postgresql")


def configure_logging(stream: TextIO | None = None) -> None:
    """Send Alembic's progress lines to standard error (once per process)."""
    logger = logging.getLogger("alembic")
    if any(getattr(h, "kubemigrate", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(_not_set_up_notes)
    handler.kubemigrate = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for chatty in QUIET_LOGGERS:
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # A down_revision naming no revision: the error that follows says which file (revisions.py).
    warnings.filterwarnings("ignore", r"Revision \S+ referenced from .* is not present")


def _not_set_up_notes(record: logging.LogRecord) -> bool:
    """Drop Alembic's per-connection notes ("Context impl ...", "Will assume ...")."""
    return not str(record.msg).startswith(("Context impl", "Will assume"))
