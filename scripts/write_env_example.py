"""Write .env.example (and print the README's settings table) from kubemigrate's settings.

uv run python scripts/write_env_example.py            # rewrite .env.example
uv run python scripts/write_env_example.py --table    # print the README table

The text of .env.example comes from `kubemigrate.migrations.scaffold.env_example`, which `inv
db.init` writes into new projects too.
"""

import sys
from pathlib import Path

from kubemigrate.migrations.scaffold import env_example
from kubemigrate.settings.declared import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
__all__ = ["ROOT", "env_example", "table"]


def table() -> str:
    rows = ["| Setting | Default | Meaning |", "| --- | --- | --- |"]
    rows += [
        f"| `{s.name}` | `{s.default}` | {s.help} |"
        if s.default
        else f"| `{s.name}` | | {s.help} |"
        for s in SETTINGS
    ]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    if "--table" in sys.argv:
        sys.stdout.write(table())
    else:
        (ROOT / ".env.example").write_text(env_example(), encoding="utf-8")
