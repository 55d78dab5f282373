"""The layer rule, checked on the source: imports only point down, and no project module imports itself back.

    harness -> {pretraining, tasks} -> humans -> core

Every ``import``/``from ... import`` of every module under ``core/``, ``humans/``, ``tasks/``, ``pretraining/``
and ``harness/`` is read from the AST, wherever it sits (module level, inside a function, under
``TYPE_CHECKING``), together with ``importlib.import_module("...")`` calls whose name is a string literal
(or an f-string, read up to its first placeholder). Nothing is imported, so the test is fast and sees the
imports a function would make only when it runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Bottom to top. A module may import its own package and any package of a lower rank; packages of one rank
# (tasks, pretraining) never import each other: harness wires them.
LAYERS: dict[str, int] = {"core": 0, "humans": 1, "tasks": 2, "pretraining": 2, "harness": 3}

# Import cycles known and owned elsewhere. Each entry names the modules of one cycle and says who removes it;
# an entry whose cycle is gone fails the test, so the list only shrinks.
KNOWN_CYCLES: dict[frozenset[str], str] = {
}

# Lower-layer modules allowed to import a module whose name is computed at run time (never a project module).
COMPUTED_IMPORTS: dict[str, str] = {
    "tasks.real.safe_pickle": "numpy's private module (numpy._core or numpy.core) that a pickle names",
}


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted name -> file of every module of the five packages (a package is its ``__init__``)."""
    mods: dict[str, Path] = {}
    for pkg in LAYERS:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def _import_module_name(node: ast.Call) -> str | None:
    """The module named by ``importlib.import_module("a.b")`` / ``import_module(f"a.{x}")``, else None."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name not in ("import_module", "__import__") or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return str(arg.values[0].value).rstrip(".") or None
    return None


def imported_names(module: str, path: Path, is_package: bool) -> list[tuple[str, int]]:
    """(dotted name, line) of everything ``module`` imports, at any nesting; relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module.split(".") if is_package else module.split(".")[:-1]
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here[: len(here) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            out += [(f"{base}.{a.name}", node.lineno) for a in node.names]
        elif isinstance(node, ast.Call) and (name := _import_module_name(node)):
            out.append((name, node.lineno))
    return out


def import_graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    """module -> {project module it imports: first line}. ``from a import b`` counts ``a.b`` when that is a
    module and ``a`` otherwise; an import of ``a.b.c`` does not count the packages above it (their
    ``__init__`` runs, but it only gathers its submodules)."""
    mods = project_modules(root)
    graph: dict[str, dict[str, int]] = {}
    for mod, path in mods.items():
        edges: dict[str, int] = {}
        for name, line in imported_names(mod, path, path.name == "__init__.py"):
            target = name
            while target and target not in mods:  # `from a.b import func` -> a.b
                target = target.rpartition(".")[0]
            if target and target != mod:
                edges.setdefault(target, line)
        graph[mod] = edges
    return graph


def layer_violations(graph: dict[str, dict[str, int]], mods: dict[str, Path], root: Path = ROOT) -> list[str]:
    bad = []
    for src, edges in sorted(graph.items()):
        top = src.split(".")[0]
        for dst, line in sorted(edges.items()):
            dtop = dst.split(".")[0]
            if dtop != top and LAYERS[dtop] >= LAYERS[top]:
                bad.append(f"{mods[src].relative_to(root)}:{line}: {src} ({top}) imports {dst} ({dtop})")
    return bad


def cycles(graph: dict[str, dict[str, int]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = set()
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        comp.add(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        found.append(frozenset(comp))
    return found


def computed_imports(root: Path = ROOT) -> list[str]:
    """``import_module(x)`` / ``__import__(x)`` calls in the layers below harness whose name is not a literal:
    the way a registry used to load a higher layer by string."""
    found = []
    for mod, path in project_modules(root).items():
        if mod.split(".")[0] == "harness":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and node.args and _import_module_name(node) is None
                    and (getattr(node.func, "attr", None) or getattr(node.func, "id", None))
                    in ("import_module", "__import__")):
                found.append(f"{path.relative_to(root)}:{node.lineno}: {mod}")
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, int]]:
    return import_graph()


def test_imports_point_down(graph: dict[str, dict[str, int]]) -> None:
    bad = layer_violations(graph, project_modules())
    assert not bad, "imports that do not point down (harness -> pretraining|tasks -> humans -> core):\n" + \
        "\n".join(bad)


def test_no_import_cycles(graph: dict[str, dict[str, int]]) -> None:
    found = cycles(graph)
    new = [sorted(c) for c in found if c not in KNOWN_CYCLES]
    assert not new, "import cycles among project modules:\n" + "\n".join(" <-> ".join(c) for c in new)
    stale = [sorted(c) for c in KNOWN_CYCLES if c not in found]
    assert not stale, f"KNOWN_CYCLES lists cycles that are gone, remove them: {stale}"


def test_no_loading_by_computed_name() -> None:
    """Registration is by explicit import: below harness, no module imports a name it computes."""
    allowed = {f"{project_modules()[m].relative_to(ROOT)}" for m in COMPUTED_IMPORTS}
    bad = [f for f in computed_imports() if f.split(":")[0] not in allowed]
    assert not bad, "imports of computed module names below harness (import explicitly instead):\n" + "\n".join(bad)


def test_walker_sees_nested_and_string_imports(tmp_path: Path) -> None:
    """The walker itself: a function-level import, a relative import and an import_module string all count."""
    for pkg in LAYERS:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "core" / "a.py").write_text("def f():\n    from humans import b\n")
    (tmp_path / "humans" / "b.py").write_text("from .c import x\n")
    (tmp_path / "humans" / "c.py").write_text("import importlib\nimportlib.import_module('humans.b')\nx = 1\n")
    (tmp_path / "tasks" / "t.py").write_text("import importlib\nm = importlib.import_module(f'pretraining.{1}')\n")
    g = import_graph(tmp_path)
    assert g["core.a"] == {"humans.b": 2}
    assert g["humans.b"] == {"humans.c": 1}
    assert g["humans.c"] == {"humans.b": 2}
    assert g["tasks.t"] == {"pretraining": 2}
    assert cycles(g) == [frozenset({"humans.b", "humans.c"})]
    (tmp_path / "core" / "reg.py").write_text("import importlib\ndef load(m):\n    importlib.import_module(m)\n")
    assert computed_imports(tmp_path) == ["core/reg.py:3: core.reg"]
    mods = project_modules(tmp_path)
    assert [v.split(": ", 1)[1] for v in layer_violations(g, mods, tmp_path)] == [
        "core.a (core) imports humans.b (humans)", "tasks.t (tasks) imports pretraining (pretraining)"]


MAX_LINES = 500


def long_files(root: Path = ROOT, limit: int = MAX_LINES) -> list[str]:
    """``path: lines`` of every .py file under the five packages and tests/ with more than ``limit`` lines."""
    found = []
    for pkg in (*LAYERS, "tests"):
        for path in sorted((root / pkg).rglob("*.py")):
            n = len(path.read_text(encoding="utf-8").splitlines())
            if n > limit:
                found.append(f"{path.relative_to(root)}: {n}")
    return found


def test_no_python_file_over_500_lines(tmp_path: Path) -> None:
    """Issue #13: no module or test file over 500 lines; one that grows past it is split by role."""
    for pkg in (*LAYERS, "tests"):
        (tmp_path / pkg).mkdir()
    (tmp_path / "tasks" / "big.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (tmp_path / "tests" / "fits.py").write_text("x = 1\n" * MAX_LINES)
    assert long_files(tmp_path) == [f"tasks/big.py: {MAX_LINES + 1}"]  # the check itself sees a long file
    bad = long_files()
    assert not bad, f"Python files over {MAX_LINES} lines (split them by role):\n" + "\n".join(bad)
