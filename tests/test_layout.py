"""The package's layout: imports go one way, as the package docstring draws it."""

import ast
import subprocess
import sys
from pathlib import Path

import textsweep

PACKAGE = Path(textsweep.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def imports_of(folder: str) -> dict[str, set[str]]:
    return {str(path.relative_to(PACKAGE)): imported_modules(path) for path in sorted((PACKAGE / folder).glob("*.py"))}


def offending(imports: dict[str, set[str]], prefixes: tuple[str, ...]) -> dict[str, list[str]]:
    return {module: sorted(name for name in names if name.startswith(prefixes))
            for module, names in imports.items() if any(name.startswith(prefixes) for name in names)}


def test_the_search_names_no_mlflow():
    assert imports_of("search") and offending(imports_of("search"), ("mlflow", "textsweep.tracking")) == {}


def test_tracking_imports_nothing_of_the_search():
    assert imports_of("tracking")
    assert offending(imports_of("tracking"), ("textsweep.search", "keras_tuner", "textsweep.registry", "textsweep.api")) == {}


def test_the_core_imports_neither_side_nor_the_api():
    core = {name: names for folder in ("data", "text") for name, names in imports_of(folder).items()}
    for module in ("config.py", "errors.py", "events.py", "layers.py", "model.py", "plots.py", "evaluation.py", "reference.py"):
        core[module] = imported_modules(PACKAGE / module)
    sides = ("mlflow", "textsweep.search", "textsweep.tracking", "textsweep.registry", "textsweep.api", "textsweep.cli")
    assert offending(core, sides) == {}


def test_only_the_cli_and_the_package_reach_the_api():
    everything = {str(p.relative_to(PACKAGE)): imported_modules(p) for p in PACKAGE.rglob("*.py")}
    users = offending(everything, ("textsweep.api", "textsweep.cli"))
    assert set(users) <= {"__init__.py", "cli.py"}, users


def test_importing_the_search_loads_no_mlflow():
    """The real import graph, not only the source text: KerasTuner's side runs without MLflow."""
    code = "import sys, textsweep.search; print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert shown.strip() == "[]"


# The package docstring's drawing, top to bottom: a module imports only from lines below its own
# (a folder's modules may also import each other).
LINES = [
    ["cli"], ["api"], ["registry"], ["candidates"], ["search", "tracking"], ["evaluation"], ["serving"], ["reference", "model"],
    ["layers", "events", "vocab"], ["text"], ["data"], ["config", "devices", "plots"], ["errors", "interrupts"],
]
RANK = {name: rank for rank, names in enumerate(LINES) for name in names}


def test_every_import_goes_down_the_drawing():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts == ("__init__",):
            continue  # the package itself: its lazy API reaches api.py
        own = parts[0]
        for name in imported_modules(path):
            target = name.split(".")[1] if name.startswith("textsweep.") else None
            if target in RANK and target != own and RANK[target] <= RANK[own]:
                upward.append(f"{'/'.join(parts)} imports {name}")
    assert RANK.keys() >= {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
                           if (p.suffix == ".py" or (p / "__init__.py").exists()) and p.stem != "__init__"}
    assert upward == []


def test_the_package_docstring_draws_the_same_lines():
    drawn = []
    for line in textsweep.__doc__.split("::", 1)[1].strip().splitlines():
        names = []
        for word in line.split():
            if word == "|":
                continue
            if not word.endswith((".py", "/")):
                break
            names.append(word.removesuffix(".py").removesuffix("/"))
        if names:
            drawn.append(sorted(names))
    assert drawn == [sorted(n for n in names if n != "vocab") for names in LINES]  # vocab.py: a shim, undrawn
