"""What each dvc.yaml stage must depend on, derived from the code: the import closure of the module its command
runs (every `import` inside src/surgvqa, lazy ones in functions included, plus the packages' __init__ files
Python runs on the way), the package data files that code names, and the params sections its `run` declares."""

from __future__ import annotations

import ast
import importlib
import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PACKAGE = "surgvqa"


def module_file(module: str) -> Path | None:
    """The source file of a surgvqa module or package, or None when it is not one."""
    base = SRC / Path(*module.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _imports(path: Path) -> set[str]:
    """The surgvqa modules one file imports, wherever the import statement stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        # Forms this reader cannot follow would hide a dependency: refuse them rather than miss one.
        if isinstance(node, ast.ImportFrom) and node.level:
            raise ValueError(f"{path}:{node.lineno}: a relative import; write `from surgvqa... import` instead")
        if isinstance(node, ast.Call) and (getattr(node.func, "attr", None) == "import_module"
                                           or getattr(node.func, "id", None) == "__import__"):
            raise ValueError(f"{path}:{node.lineno}: a dynamic import the dependency check cannot follow")
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            found.add(node.module)
            # `from surgvqa.data import questions` imports the submodule surgvqa.data.questions
            found |= {f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}")}
    return found


def import_closure(module: str) -> set[Path]:
    """Every src/surgvqa file that running `python -m module` can execute."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__ first
            parent = ".".join(parts[:i])
            if parent not in seen and module_file(parent):
                seen.add(parent)
                todo.extend(_imports(module_file(parent)))
    return {module_file(m) for m in seen}


def data_files(code: set[Path]) -> set[Path]:
    """Package data (non-Python files under src/surgvqa) whose file name appears in a string of that code."""
    files = [p for p in (SRC / PACKAGE).rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")
             and "__pycache__" not in p.parts and ".egg-info" not in str(p)]
    texts = {f: f.read_text(encoding="utf-8") for f in code}
    return {d for d in files if any(repr(d.name)[1:-1] in t for t in texts.values())}


# What may stand before `-m`: Python itself, or params.yaml's launcher of several processes (params/launch.py).
STARTERS = ("python", "${launch.command}")


def stage_module(cmd: str) -> str:
    """The module a stage's command runs: `python -m surgvqa.<package>.<stage> ...` (or `${launch.command} -m`)."""
    words = shlex.split(cmd)
    if words[0] not in STARTERS or words[1] != "-m" or not words[2].startswith(PACKAGE + "."):
        raise ValueError(f"a stage command must be `python -m surgvqa.<module> ...`, got {cmd!r}")
    return words[2]


def expected(cmd: str) -> tuple[set[str], set[str]]:
    """(code and data deps as repo-relative paths, params sections) a stage with this command must declare."""
    from surgvqa.params.typed import sections_of

    module = stage_module(cmd)
    code = import_closure(module)
    deps = {str(p.relative_to(REPO)) for p in code | data_files(code)}
    return deps, set(sections_of(importlib.import_module(module).run))


def is_code(dep: str) -> bool:
    """A dependency on the project's own source (code or package data)."""
    return dep.startswith(f"src/{PACKAGE}")


def expand_foreach(stages: dict) -> dict[str, dict]:
    """dvc.yaml stages with `foreach` expanded as DVC names them (`train_sequential@1`), `${item}` filled in."""
    out = {}
    for name, stage in stages.items():
        if "foreach" not in stage:
            out[name] = stage
            continue
        items = stage["foreach"]
        pairs = items.items() if isinstance(items, dict) else ((str(i), i) for i in items)
        for key, item in pairs:
            text = repr(stage["do"])
            text = re.sub(r"\$\{item\.(\w+)\}", lambda m, item=item: str(item[m.group(1)]), text)
            out[f"{name}@{key}"] = ast.literal_eval(text.replace("${item}", str(item)))
    return out
