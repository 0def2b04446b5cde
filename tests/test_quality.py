"""ruff and mypy stay clean, and the package keeps its shape: no import cycle, a module imports
only its own layer and those below, the longest import chain crosses each layer once, no module
grows past 400 lines, and none imports another's private names. They run with the suite, so
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


def _modules() -> dict[str, Path]:
    """The package's modules by dotted name (a package is its `__init__`)."""
    root = REPO / "src"
    return {
        ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (root / "kubemigrate").rglob("*.py")
    }


def _graph() -> dict[str, set[str]]:
    """Which of the package's modules each module imports (a submodule's import of its own
    package, which Python does first anyway, left out)."""
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(path, name, known) for name, path in modules.items()}
    return {name: {d for d in deps if not name.startswith(d + ".")} for name, deps in graph.items()}


# The layers, lowest first: a module imports only its own layer and those below it. The public
# `kubemigrate.models` (which users' env.py files import) sits with the migrations; the package
# itself (`kubemigrate.namespace`, `kubemigrate.discover`) and `python -m kubemigrate` on top.
LAYERS = (
    ("errors", "settings", "files", "units"),
    ("process",),
    ("postgres",),
    ("kubernetes",),
    ("target",),
    ("migrations", "models"),
    ("review",),
    ("release",),
    ("tasks", "__main__", ""),
)


def layer(module: str) -> int:
    """The layer of a module, by its first name under the package."""
    first = module.removeprefix("kubemigrate").lstrip(".").split(".")[0]
    return next(i for i, names in enumerate(LAYERS) if first in names)


def test_a_module_imports_only_its_own_layer_and_those_below() -> None:
    graph = _graph()
    upward = [
        f"{name} ({LAYERS[layer(name)][0]}) imports {dep} ({LAYERS[layer(dep)][0]})"
        for name, deps in sorted(graph.items())
        for dep in sorted(deps)
        if layer(dep) > layer(name)
    ]
    assert not upward, "\n".join(upward)


def test_the_longest_import_chain_crosses_each_layer_once() -> None:
    """At most one module per layer on any chain of imports. A package's `__init__` is not
    counted: it holds the layer's docstring (and, for `tasks`, the Collection's assembly)."""
    modules = _modules()
    packages = {name for name, path in modules.items() if path.name == "__init__.py"}
    graph = {
        name: {d for d in deps if d not in packages}
        for name, deps in _graph().items()
        if name not in packages
    }
    longest: dict[str, list[str]] = {}

    def chain(name: str) -> list[str]:
        if name not in longest:
            longest[name] = [name, *max((chain(d) for d in graph[name]), key=len, default=[])]
        return longest[name]

    worst = max((chain(name) for name in graph), key=len)
    assert len(worst) <= len(LAYERS), " -> ".join(worst)


def test_no_module_is_longer_than_400_lines() -> None:
    long = {
        name: count
        for name, path in _modules().items()
        if (count := len(path.read_text().splitlines())) > 400
    }
    assert not long, long


def test_no_module_imports_another_modules_private_names() -> None:
    """`from kubemigrate.x import _name`, or `x._name` on an imported module of the package."""
    found = []
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        aliases = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kubemigrate"):
                for alias in node.names:
                    if alias.name.startswith("_"):
                        found.append(f"{name}: from {node.module} import {alias.name}")
                    aliases.add(alias.asname or alias.name)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                found.append(f"{name}: {node.value.id}.{node.attr}")
    assert not found, "\n".join(found)


def test_the_package_has_no_import_cycle() -> None:
    graph = _graph()
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
