"""The import graph of wsss/: arrows point down the layers, no cycles, no stage borrowing from
another stage, and the package never reaches into cli/, benchmarks/ or experiments/."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first; a module may import its own layer or any layer below it.
GROUND = {"wsss", "wsss.errors"}
BASICS = {"wsss.io", "wsss.lock", "wsss.torchrun", "wsss.cam_math", "wsss.ui", "wsss.option",
          "wsss.amp"}  # fmt: skip
DATA = {"wsss.resume"}  # plus every wsss.data.* module
# The recipes (what every stage of a run is given) are read by the pipeline, the CLI and
# experiments/ only; they sit with the pipeline so that no stage comes to depend on a recipe.
# The stage registry too: it names every stage, and the CLI and the pipeline read it.
ORCHESTRATORS = {"wsss.stages.pipeline", "wsss.recipes", "wsss.registry"}
# Every stage's options (wsss.configs.*) sit above what their checks use, below the stages.
LAYERS = ("ground", "basics", "data", "models", "engine", "algorithms", "configs", "stages",
          "orchestrators")  # fmt: skip


def layer(module: str) -> int:
    if module in GROUND:
        name = "ground"
    elif module in BASICS:
        name = "basics"
    elif module in DATA or _within(module, "wsss.data"):
        name = "data"
    elif _within(module, "wsss.models"):
        name = "models"
    elif _within(module, "wsss.engine"):
        name = "engine"
    elif module in ORCHESTRATORS:
        name = "orchestrators"
    elif _within(module, "wsss.configs"):
        name = "configs"
    elif _within(module, "wsss.stages"):
        name = "stages"
    else:  # inference, checkpoints, CAM files, CRF, pseudo labels, CAM thresholds, metrics, ...
        name = "algorithms"
    return LAYERS.index(name)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


# First-party roots: the package and the folders outside it that it must never import.
FIRST_PARTY = ("wsss", "cli", "benchmarks", "experiments", "scripts")
OUTSIDE = ("cli", "benchmarks", "experiments", "scripts")


def import_graph(root: Path, package: str = "wsss") -> dict[str, set[str]]:
    """Module -> the first-party modules it imports (at the top or inside functions), relative
    imports resolved to their absolute names."""
    paths = list((root / package).rglob("*.py"))
    files = {module_name(p, root) for p in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        module = module_name(path, root)
        # the package a relative import starts from: a package's __init__ is that package
        here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                source = ".".join([*base, *([node.module] if node.module else [])])
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    targets.add(sub if sub in files else source)
        graph[module] = {t for t in targets if t.split(".")[0] in {package, *FIRST_PARTY}}
    return graph


def outside_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports of cli/, benchmarks/, experiments/ or scripts/ (from inside the package)."""
    return [
        f"{module} -> {target}"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if target.split(".")[0] in OUTSIDE
    ]


def cli_shortcuts(graph: dict[str, set[str]]) -> list[str]:
    """cli/ imports of wsss below the stages (models, engine, algorithms)."""
    helpers = {"models", "engine", "algorithms"}
    return [
        f"{module} -> {target}"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if target.startswith("wsss") and LAYERS[layer(target)] in helpers
    ]


def upward_arrows(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{module} -> {target}"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if target.startswith("wsss") and layer(target) > layer(module)
    ]


def stage_borrowing(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{module} -> {target}"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if layer(module) == LAYERS.index("stages") == layer(target) and module != target
    ]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (Tarjan)."""
    edges = {m: {t for t in ts if t in graph} for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in edges[node]:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(ROOT)


def test_the_graph_covers_the_package(graph):
    assert {"wsss.inference", "wsss.engine.trainer", "wsss.stages.make_cam"} <= set(graph)
    assert "wsss.data.loader" in graph["wsss.inference"] or "wsss.data.loader" in {
        t for ts in graph.values() for t in ts
    }


def test_recipes_and_thresholds_sit_in_their_layers(graph):
    assert {"wsss.recipes", "wsss.cam_threshold", "wsss.engine.finished"} <= set(graph)
    assert LAYERS[layer("wsss.recipes")] == "orchestrators"
    assert LAYERS[layer("wsss.cam_threshold")] == "algorithms"
    assert LAYERS[layer("wsss.engine.finished")] == "engine"
    # the ablation (experiments/) shares the recipes with the pipeline instead of importing it
    ablation = import_graph(ROOT, "experiments")["experiments.puzzle_ablation"]
    assert "wsss.recipes" in ablation and "wsss.stages.pipeline" not in ablation


def test_no_module_imports_a_layer_above_it(graph):
    assert upward_arrows(graph) == []


def test_no_stage_imports_another_stage(graph):
    assert stage_borrowing(graph) == []


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_the_package_never_imports_cli_benchmarks_or_experiments(graph):
    assert outside_imports(graph) == []


def test_the_cli_reaches_algorithms_only_through_the_stages():
    """Parsing and defaults of an option live with the stage's config, not in cli/."""
    assert cli_shortcuts(import_graph(ROOT, "cli")) == []


def test_the_checks_catch_bad_imports(tmp_path: Path):
    """A planted upward import, a stage borrowing from a stage and a cycle are all reported."""
    package = tmp_path / "wsss"
    (package / "engine").mkdir(parents=True)
    (package / "stages").mkdir()
    for init in (package, package / "engine", package / "stages"):
        (init / "__init__.py").write_text("")
    (package / "engine" / "trainer.py").write_text("from wsss.stages.make_cam import run\n")
    (package / "stages" / "make_cam.py").write_text(
        "def run():\n    from wsss.stages.predict import run\n"
    )
    (package / "stages" / "predict.py").write_text(
        "import wsss.stages.make_cam\nimport cli\nfrom experiments.suite import run\n"
    )
    planted = import_graph(tmp_path)
    assert upward_arrows(planted) == ["wsss.engine.trainer -> wsss.stages.make_cam"]
    assert stage_borrowing(planted) == [
        "wsss.stages.make_cam -> wsss.stages.predict",
        "wsss.stages.predict -> wsss.stages.make_cam",
    ]
    assert cycles(planted) == [["wsss.stages.make_cam", "wsss.stages.predict"]]
    assert outside_imports(planted) == [
        "wsss.stages.predict -> cli",
        "wsss.stages.predict -> experiments.suite",
    ]


def _plant(root: Path, files: dict[str, str]) -> None:
    """A tree of packages under `root`: every folder of a planted file gets an __init__.py."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for folder in path.relative_to(root).parents:
            if folder != Path("."):
                (root / folder / "__init__.py").touch()
        path.write_text(text)


def test_the_cli_check_catches_an_import_of_the_algorithms(tmp_path: Path):
    """A cli/ module that imports an algorithms-layer module of wsss is reported."""
    planted = "def make():\n    from wsss.inference import cam_batch\n"
    _plant(tmp_path, {"cli/cam_commands.py": planted, "wsss/inference.py": "cam_batch = 1\n"})
    graph = import_graph(tmp_path, "cli")
    assert graph["cli.cam_commands"] == {"wsss.inference"}
    assert cli_shortcuts(graph) == ["cli.cam_commands -> wsss.inference"]


def test_the_checks_resolve_relative_imports(tmp_path: Path):
    """A relative import counts like its absolute spelling: `..stages.make_cam` in
    wsss/engine/trainer.py is an upward arrow; `.` in a package's __init__.py is that package."""
    _plant(tmp_path, {"wsss/engine/trainer.py": "from ..stages.make_cam import run\n",
                      "wsss/engine/__init__.py": "from . import trainer\nfrom .trainer import x\n",
                      "wsss/stages/make_cam.py": "run = 1\n"})  # fmt: skip
    graph = import_graph(tmp_path)
    assert graph["wsss.engine.trainer"] == {"wsss.stages.make_cam"}
    assert graph["wsss.engine"] == {"wsss.engine.trainer"}
    assert upward_arrows(graph) == ["wsss.engine.trainer -> wsss.stages.make_cam"]


def test_the_crf_workers_start_without_torch() -> None:
    """make-pseudo's worker processes import the stage's module to rebuild their worker; torch
    there costs each worker ~1.5 s of start-up (the CPU bench's make-pseudo figure fell from
    0.86 to 0.68 per core when the CAM file module came to import it)."""
    code = "import sys, wsss.stages.make_pseudo; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
