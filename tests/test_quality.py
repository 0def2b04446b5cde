"""ruff and mypy stay clean, and the package has no import cycle: they run with the suite, so
`uv run pytest` is the whole check."""

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def check(*argv: str) -> None:
    proc = subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_lint() -> None:
    check("ruff", "check", ".")


def test_ruff_format() -> None:
    check("ruff", "format", "--check", ".")


def test_mypy() -> None:
    check("mypy")


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """The package's modules `module` imports, at any level of the file (functions included),
    leaving out `if TYPE_CHECKING:` blocks, which never run."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            nodes: list[ast.AST] = list(node.orelse)
        else:
            nodes = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        for child in nodes:
            visit(child)

    visit(ast.parse(path.read_text()))
    return (found & known) - {module}


def test_the_package_has_no_import_cycle() -> None:
    root = REPO / "src"
    modules = {
        ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (root / "kubemigrate").rglob("*.py")
    }
    known = set(modules)
    graph = {name: _imports(path, name, known) for name, path in modules.items()}
    graph = {
        name: {d for d in deps if not name.startswith(d + ".")} for name, deps in graph.items()
    }
    cycles: list[list[str]] = []

    def walk(name: str, path: list[str]) -> None:
        for dep in sorted(graph[name]):
            if dep in path:
                cycles.append([*path[path.index(dep) :], dep])
            elif dep not in seen:
                seen.add(dep)
                walk(dep, [*path, dep])

    seen: set[str] = set()
    for name in sorted(graph):
        if name not in seen:
            seen.add(name)
            walk(name, [name])
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles)
