"""Write .env.example (and print the README's settings table) from kubemigrate's settings.

uv run python scripts/write_env_example.py            # rewrite .env.example
uv run python scripts/write_env_example.py --table    # print the README table
"""

import sys
from pathlib import Path

from kubemigrate.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
HEADER = """\
# kubemigrate settings. Copy to .env (untracked) or .env.<environment> and uncomment what you need.
# Order, later wins: defaults, .env, .env.<environment>, the process environment.
# Passwords belong in a Kubernetes Secret or an untracked .env, never in a committed file.
"""


def env_example() -> str:
    blocks = [HEADER]
    for setting in SETTINGS:
        blocks.append(f"\n# {setting.help}\n# {setting.name}={setting.default}\n")
    return "".join(blocks)


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
        (ROOT / ".env.example").write_text(env_example())
