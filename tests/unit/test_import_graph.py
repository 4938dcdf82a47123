"""The layering of drcore (DESIGN.md section 3): each capability imports only the ones below it, and no
module imports in a cycle. Read from the source with ast, so nothing is imported to check it."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

DRCORE = Path(__file__).resolve().parents[2] / "functions" / "drcore"

# Lowest first: a subpackage may import itself and any subpackage before it.
LAYERS = ["core", "aws", "state", "rollback", "backup", "restore", "region", "drill", "wiring"]

# What a watcher's handler may load: a rollback never waits for a restore engine to import.
WATCHER_LAYERS = {"core", "aws", "state", "rollback", "wiring"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(DRCORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _drcore_modules(node: ast.AST) -> set[str]:
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("drcore"):
        return {node.module}
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name.startswith("drcore")}
    return set()


def drcore_imports(path: Path) -> set[str]:
    """The drcore modules a file imports, at any depth of the file (function-level imports count too)."""
    return {module for node in ast.walk(ast.parse(path.read_text())) for module in _drcore_modules(node)}


def imported_at_load(path: Path) -> set[str]:
    """The drcore modules a file imports when it is loaded: not those a function imports when it runs, nor those
    under `if TYPE_CHECKING:`."""
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.If):
                if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body + node.orelse + node.finalbody + [line for handler in node.handlers
                                                                   for line in handler.body])
            else:
                found.update(_drcore_modules(node))

    visit(ast.parse(path.read_text()).body)
    return found


def import_graph(imports: Callable[[Path], set[str]] = drcore_imports) -> dict[str, set[str]]:
    return {_module_name(path): imports(path) for path in sorted(DRCORE.rglob("*.py"))}


def reached_from(handler: str, imports: Callable[[Path], set[str]] = drcore_imports) -> set[str]:
    """The drcore modules a function's handler module reaches through `imports`."""
    graph = import_graph(imports)
    reached: set[str] = set()
    pending = imports(DRCORE.parent / handler / "handler.py")
    while pending:
        module = pending.pop()
        if module in reached:
            continue
        reached.add(module)
        # importing a.b.c runs a/__init__ and a/b/__init__ too
        parents = {".".join(module.split(".")[:depth]) for depth in range(1, module.count(".") + 1)}
        pending |= (graph.get(module, set()) | parents) - reached
    return reached


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> list[str] | None:
        if module in visiting:
            return [*visiting[visiting.index(module):], module]
        if module in done or module not in graph:
            return None
        visiting.append(module)
        for imported in sorted(graph[module]):
            if cycle := visit(imported):
                return cycle
        visiting.pop()
        done.add(module)
        return None

    for module in graph:
        if cycle := visit(module):
            return cycle
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, imports in graph.items():
        own = layer_of(module)
        if own is None:
            continue
        for imported in imports:
            target = layer_of(imported)
            if target is None or LAYERS.index(target) > LAYERS.index(own):
                wrong.append(f"{module} imports {imported}")
    return wrong


def test_every_subpackage_is_a_known_layer() -> None:
    # Given the package on disk, Then each directory is one of the layers, in the order they are drawn
    packages = {path.name for path in DRCORE.iterdir() if (path / "__init__.py").exists()}
    assert packages == set(LAYERS)
    assert not [path.name for path in DRCORE.glob("*.py") if path.name != "__init__.py"], "modules belong to a layer"


def test_no_module_imports_upward() -> None:
    assert upward_imports(import_graph()) == []


def test_no_import_cycle() -> None:
    assert find_cycle(import_graph()) is None


@pytest.mark.parametrize("handler", ["health_watcher", "performance_watcher"])
def test_a_watcher_loads_no_backup_or_restore_engine(handler: str) -> None:
    # Given the modules a watcher's handler reaches through drcore imports, at any depth
    reached = reached_from(handler)
    # Then every one of them is in the layers a rollback needs
    assert {layer_of(module) for module in reached} - {None} <= WATCHER_LAYERS


def test_the_recovery_function_loads_its_engines_on_first_use() -> None:
    # Given the modules the recovery function's handler loads when it is imported, as a cold start does
    reached = reached_from("recovery", imported_at_load)
    # Then they are the alias actions' and the requests' and settings': a rollback or a promote from a cold start
    # waits for no backup, restore, region or drill engine to import
    assert {layer_of(module) for module in reached} - {None} <= WATCHER_LAYERS | {"backup", "restore"}
    assert {module for module in reached if layer_of(module) == "backup"} <= {"drcore.backup", "drcore.backup.requests"}
    assert {module for module in reached if layer_of(module) == "restore"} <= {
        "drcore.restore", "drcore.restore.manual_actions", "drcore.restore.recovery", "drcore.restore.preflight",
        "drcore.restore.validation_controls", "drcore.restore.validation"}
    # And the engines are still wired: the recovery wiring imports them when an action first needs them
    assert "drcore.wiring.recovery_engines" in import_graph()["drcore.wiring.recovery"]


def test_the_checks_catch_what_they_look_for() -> None:
    # Given graphs with an upward import and a cycle, Then each check names them (a check that cannot fail is none)
    assert upward_imports({"drcore.core.models": {"drcore.restore.actions"}}) == [
        "drcore.core.models imports drcore.restore.actions"]
    assert find_cycle({"drcore.a.x": {"drcore.a.y"}, "drcore.a.y": {"drcore.a.x"}}) == [
        "drcore.a.x", "drcore.a.y", "drcore.a.x"]


def test_a_load_reads_only_the_imports_that_run_when_the_module_loads(tmp_path: Path) -> None:
    # Given a module importing at its top, in a try, under TYPE_CHECKING and inside a function
    module = tmp_path / "module.py"
    module.write_text("from drcore.core import models\n"
                      "try:\n    import drcore.aws.errors\nexcept ImportError:\n    pass\n"
                      "if TYPE_CHECKING:\n    from drcore.backup.catalog import BackupCatalog\n"
                      "def later():\n    from drcore.region import failover_action\n")
    # Then a load runs the first two, and any depth of the file holds all four
    assert imported_at_load(module) == {"drcore.core", "drcore.aws.errors"}
    assert drcore_imports(module) == {"drcore.core", "drcore.aws.errors", "drcore.backup.catalog", "drcore.region"}
