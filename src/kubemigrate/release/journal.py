"""The journal of one `inv` invocation: the release steps it finished and the backup it took.

Each step of a release records itself here, whether typed as `inv release`, as
`inv db.backup db.upgrade db.verify deploy` or as `inv backup migrate verify deploy`, so when a
step fails the user is told what was done and the exact command that restores the backup
taken before.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Journal:
    """The release steps this invocation finished, and the backup it took."""

    done: list[str] = field(default_factory=list)
    backup: Path | None = None
    environment: str | None = None
    before: str | None = None  # the heads before the upgrade applied its first step (ledger)
    linted: set[str] = field(default_factory=set)  # environments whose gate passed

    def record(
        self,
        step: str,
        *,
        backup: Path | None = None,
        environment: str | None = None,
        before: str | None = None,
    ) -> None:
        self.done.append(step)
        if environment is not None:
            self.environment = environment
        if backup is not None:
            self.backup = backup
        if before is not None and self.before is None:
            self.before = before

    def failure_note(self, step: str) -> str:
        """What to tell after `step` failed: what was done, and how to undo the database: back
        to the head before the release (from the ledger), or the backup taken before."""
        if not self.done:
            return ""
        note = f"{step} failed after: {', '.join(self.done)}."
        env = f" --env {self.environment}" if self.environment else ""
        undo = []
        if self.before is not None and "," not in self.before:
            head = self.before or "base"
            undo.append(
                f"to take the database back to the head before this release ({head}): "
                f"inv db.downgrade {head}{env} --yes"
            )
        if self.backup is not None:
            undo.append(
                "to restore the database as it was before: "
                f"inv db.restore {shlex.quote(str(self.backup))}{env} --yes"
            )
        if undo:
            text = "; or ".join(undo)
            note += f" {text[0].upper()}{text[1:]}"
        return note


journal = Journal()
