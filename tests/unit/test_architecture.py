"""The layers of docs/ARCHITECTURE.md, checked on the code: no import cycle (imports inside
functions included), each layer imports only the layers below it, no file past 300 lines, and no
block of six lines written twice."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "videomar"
MAX_LINES = 300
BLOCK = 6  # lines that, standing twice, make a duplicate

# The layers, lowest first: a module imports only from its own layer and the ones before it
# (docs/ARCHITECTURE.md). A module belongs to the longest prefix that names it.
LAYERS = [
    "videomar.errors",
    "videomar.artifacts.layout",
    "videomar.artifacts.storage",
    "videomar.model",
    "videomar.artifacts",
    "videomar.ray_env",
    "videomar.data_pipelines",
    "videomar.platform.specs",
    "videomar.platform",
    "videomar",
]
PLATFORM_AREAS = ("training", "evaluation", "serving")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """Our modules that ``name`` imports anywhere in its file (inside functions too). Importing
    ``a.b.c`` imports the packages ``a`` and ``a.b`` first; a module's own parent packages are
    already imported when it runs, so they are not edges."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    out = set()
    for target in targets:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            candidate = ".".join(parts[:i])
            if candidate in known and candidate != name and not name.startswith(candidate + "."):
                out.add(candidate)
    return out


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported(name, path, set(found)) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def layer_of(name: str) -> int:
    matches = [layer for layer in LAYERS if name == layer or name.startswith(layer + ".")]
    return LAYERS.index(max(matches, key=len))


def test_the_import_graph_has_no_cycle():
    assert cycles(import_graph()) == []


def test_each_layer_imports_only_the_layers_below_it():
    graph, found = import_graph(), modules()
    # A package whose __init__ imports nothing only names a folder: importing through it is free.
    folders = {name for name, path in found.items() if path.name == "__init__.py" and not graph[name]}
    wrong = [f"{name} imports {dep}" for name, deps in graph.items()
             for dep in deps - folders if layer_of(dep) > layer_of(name)]
    assert wrong == []


def test_training_evaluation_and_serving_do_not_import_each_other():
    wrong = []
    for name, deps in import_graph().items():
        mine = [a for a in PLATFORM_AREAS if name.startswith(f"videomar.platform.{a}")]
        for dep in deps:
            theirs = [a for a in PLATFORM_AREAS if dep.startswith(f"videomar.platform.{a}")]
            if mine and theirs and mine != theirs:
                wrong.append(f"{name} imports {dep}")
    assert wrong == []


def test_the_model_imports_no_ray():
    for name, path in modules().items():
        if name.startswith("videomar.model"):
            assert not re.search(r"^\s*(import ray|from ray)", path.read_text(), re.M), name


def test_no_file_is_longer_than_300_lines():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def code_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text with white space folded) of the lines that carry code."""
    out = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = " ".join(line.split())
        if not text or text.startswith(("#", "from ", "import ")) or len(text) < 4:
            continue
        out.append((number, text))
    return out


def test_no_block_of_six_code_lines_stands_twice():
    seen: dict[tuple[str, ...], str] = {}
    twice: dict[str, str] = defaultdict(str)
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = code_lines(path)
        for i in range(len(lines) - BLOCK + 1):
            block = tuple(text for _, text in lines[i:i + BLOCK])
            where = f"{path.relative_to(ROOT)}:{lines[i][0]}"
            if block in seen and not seen[block].startswith(f"{path.relative_to(ROOT)}:"):
                twice[where] = seen[block]
            seen.setdefault(block, where)
    assert dict(twice) == {}
