"""The package's plan holds: every module imports only its own folder and the folders below it, and
no modules import each other in a circle (imports inside functions included).

Folders from the bottom up: ``errors``/``limits``/``masks``/``outputs``/``runtime`` -> ``models``, ``data`` -> ``config`` -> ``engine``
-> ``inference`` -> ``evaluation`` -> ``deploy`` -> ``api`` -> ``tools`` -> ``research`` -> ``serve`` -> ``cli``. A newcomer finds a
stage by its folder, and a change low in the house never has to know what stands above it.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "csrseg"

# what each folder (or top-level module) may import, besides itself
BELOW = {
    "errors": set(),
    "limits": {"errors"},  # the ranges settings declare (every floor's settings classes use it)
    "outputs": {"errors"},  # output folders every writing verb shares: numbered defaults, refusals, locks
    "masks": {"errors"},  # masks within their boxes and their RLE: the heads make them, every later stage reads them
    "runtime": {"errors"},
    "models": {"errors", "limits", "masks", "runtime"},
    "data": {"errors", "limits", "masks", "runtime"},
    "config": {"errors", "limits", "masks", "runtime", "models", "data"},
    "engine": {"errors", "limits", "masks", "runtime", "models", "data", "config"},
    "inference": {"errors", "limits", "masks", "runtime", "models", "data", "config", "engine"},
    "evaluation": {"errors", "limits", "masks", "runtime", "models", "data", "config", "engine", "inference"},
    "deploy": {"errors", "limits", "masks", "runtime", "models", "data", "config", "engine", "inference", "evaluation"},
    "api": {"errors", "limits", "masks", "runtime", "models", "data", "config", "engine", "inference", "evaluation", "deploy"},
    "tools": {"errors", "limits", "masks", "runtime", "models", "data", "config", "engine", "inference", "evaluation", "deploy", "api"},
    # reproducing and measuring the paper (benchmark, ablations, the demo): on the verbs and the user's tools
    "research": {"errors", "limits", "masks", "runtime", "models", "data", "config", "engine", "inference", "evaluation", "deploy",
                 "api", "tools"},
    # the HTTP server (issue 35): the API's predictors behind a web stack, below the CLI that starts it
    "serve": {"errors", "limits", "masks", "runtime", "models", "data", "config", "engine", "inference", "evaluation", "deploy", "api",
              "tools"},
    "cli": {"errors", "limits", "masks", "runtime", "models", "data", "config", "engine", "inference", "evaluation", "deploy", "api",
            "tools", "research", "serve"},
}
# tracking (identities across video frames) stands on errors alone; inference and every folder above it use it
BELOW["tracking"] = {"errors"}
for _folder_above in [name for name, below in BELOW.items() if "engine" in below]:
    BELOW[_folder_above].add("tracking")
# the output-folder policy stands on errors alone: the trainer and every verb that writes use it
for _folder_above in [name for name, below in BELOW.items() if "config" in below]:
    BELOW[_folder_above].add("outputs")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The csrseg modules ``name`` imports anywhere in its file (``from X import Y`` counts Y when Y
    is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets |= {a.name for a in node.names if a.name.startswith("csrseg")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith("csrseg"):
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.add(full if full in known else base)
    return {t for t in targets if t in known and t != name}


def _folder(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "csrseg"


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, set(modules)) for name, path in modules.items()}


def test_every_folder_imports_only_the_folders_below_it():
    graph = _graph()
    folders = {_folder(m) for m in graph} - {"csrseg"}
    assert folders == set(BELOW), f"folders not in the plan: {sorted(folders ^ set(BELOW))}"
    upward = [f"{module} -> {target}" for module, targets in graph.items() if _folder(module) != "csrseg"
              for target in targets if _folder(target) not in BELOW[_folder(module)] | {_folder(module)}]
    assert not upward, "imports against the plan:\n" + "\n".join(sorted(upward))


def test_no_modules_import_each_other_in_a_circle():
    graph = {m: {t for t in targets if t != "csrseg"} for m, targets in _graph().items() if m != "csrseg"}
    # a package's __init__ that only hands names on is its children's face: importing the package
    # runs it, so it stays a node of its own
    state: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not circles, "\n".join(" -> ".join(c) for c in circles)


# The user's verbs take every option by name (keyword-only after the first), each an independent
# choice of the caller: a dataclass of them would only rename their parameters (as detectron2's and
# Ultralytics' own verbs do, keywords all the way). Everything else takes at most 8.
VERBS = {"csrseg.api.train.train", "csrseg.api.evaluate.evaluate", "csrseg.api.predict.predict",
         "csrseg.api.predict.load_predictor", "csrseg.api.export.export", "csrseg.research.benchmark.benchmark"}


def test_functions_take_at_most_eight_parameters_and_verbs_take_names():
    too_many, positional_verbs = [], []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            args = node.args
            given = [a.arg for a in (*args.posonlyargs, *args.args)]
            count = len(given) + len(args.kwonlyargs) - (given[:1] in (["self"], ["cls"]))
            if f"{name}.{node.name}" in VERBS:
                if len(given) > 1:
                    positional_verbs.append(f"{name}.{node.name}: {given}")
            elif count > 8:
                too_many.append(f"{name}.{node.name} ({count})")
    assert not too_many, f"more than 8 parameters: {too_many}"
    assert not positional_verbs, f"verbs with options before the '*': {positional_verbs}"
