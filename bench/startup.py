"""1. Start-up: `inv --list` against `python -c "import invoke"` (target: at most 1.5x)."""

from bench.timing import PYTHON, REPO, Result, alternate, command


def measure(repetitions: int) -> list[Result]:
    import os

    env = dict(os.environ)
    ours, bare = alternate(
        command([PYTHON, "-m", "invoke", "--list"], REPO, env),
        command([PYTHON, "-c", "import invoke"], REPO, env),
        repetitions,
    )
    return [Result("start-up: `inv --list` vs `import invoke`", ours, bare, "<= 1.5x")]
