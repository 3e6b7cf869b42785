"""The import layering: no cycle among semcc's modules, and inference / pictures never load Lightning."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _all_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, those inside functions (imported on first use) included."""
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """The import statements that run when the module is imported: the module body, including ``if`` / ``try``
    blocks, but not functions, classes or ``if TYPE_CHECKING:`` blocks."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, ast.If):
                if "TYPE_CHECKING" not in ast.unparse(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                    visit(block)
            elif isinstance(node, ast.With):
                visit(node.body)

    visit(tree.body)
    return found


def import_graph(lazy: bool = False) -> dict[str, set[str]]:
    """semcc module -> the semcc modules its top-level imports name (``from a.b import c`` names ``a.b.c``
    when that is a module, else ``a.b``); ``lazy``: the imports inside functions too."""
    statements = _all_imports if lazy else _top_level_imports
    files = {_module_name(p): p for p in SRC.joinpath("semcc").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in statements(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            edges |= {t for t in targets if t in files and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a path that returns to its start), or ``None``."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    """Whether an import path leads from ``start`` to ``goal``."""
    seen, todo = set(), list(graph.get(start, ()))
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo += graph.get(node, ())
    return False


def test_the_graph_sees_imports() -> None:
    graph = import_graph()
    assert "semcc.data.inputs" in graph["semcc.inference"]
    assert "semcc.commands" in graph["semcc.cli"]  # CommandError
    assert "semcc.tasks.module" in graph["semcc.cli"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_cycle_through_inference_even_on_first_use() -> None:
    """Imports inside functions included: inference, pictures, image inputs and the commands import nothing that
    imports them back (``inference`` <-> ``visualize`` did, through the caption command)."""
    graph = import_graph(lazy=True)
    assert "semcc.visualize" in graph["semcc.commands.caption"]  # the lazy imports are seen
    for module in sorted(graph):
        if module in ("semcc.inference", "semcc.visualize", "semcc.data.inputs", "semcc.cli", "semcc.main") or (
            module.startswith("semcc.commands")
        ):
            assert not reaches(graph, module, module), f"{module} imports itself back (on first use)"


def test_inference_and_visualize_do_not_import_lightning() -> None:
    """Nor do the pure-torch layers (models, readers, SynthLEVIR, the strategy table) or the public API's
    package (``import semcc`` imports its names on first use)."""
    code = (
        "import sys\n"
        "import semcc, semcc.inference, semcc.visualize, semcc.data.inputs\n"
        "import semcc.models, semcc.data.levir, semcc.data.synthetic, semcc.data.sampler, semcc.strategies\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning'))\n"
        "print(loaded[:5])\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"Lightning loaded: {result.stdout} {result.stderr[-2000:]}"


def test_public_api_at_the_top() -> None:
    import semcc
    from semcc import Predictor, SemanticCCDataModule, SemanticCCTask, build_semantic_cc, load_task
    from semcc.data.datamodule import SemanticCCDataModule as DataModule
    from semcc.inference import Predictor as Pred
    from semcc.models.presets import build_semantic_cc as build
    from semcc.tasks.loading import load_task as load
    from semcc.tasks.module import SemanticCCTask as Task

    assert (SemanticCCTask, SemanticCCDataModule, Predictor, build_semantic_cc, load_task) == (
        Task, DataModule, Pred, build, load)
    assert set(semcc.__all__) <= set(dir(semcc))
    for name in semcc.__all__:
        assert getattr(semcc, name) is not None, name
    from semcc.data import SemanticCCDataModule as FromData
    from semcc.tasks import SemanticCCTask as FromTasks

    assert FromData is DataModule and FromTasks is Task
