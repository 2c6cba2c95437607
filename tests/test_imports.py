"""The package imports cleanly, module by module, and its top-level imports form no cycle.

A cycle of top-level imports makes a module's importability depend on which module of the
cycle is imported first (the other one sees a half-initialised module). Imports inside
functions run later, when every module is complete, so they may close a cycle on purpose;
imports under ``if TYPE_CHECKING:`` never run. The graph below has an edge ``a -> b`` when
importing ``a`` runs ``import b`` at module level, and also ``a -> p`` for every package
``p`` above ``b`` that is not above ``a`` (Python runs ``p/__init__.py`` first).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import trustrec

PACKAGE = "trustrec"
ROOT = Path(trustrec.__file__).resolve().parent
#: Seconds the fresh interpreter may take to import every module (measured: about 15 s
#: on 2 busy cores; torch, numba, sklearn and fastapi dominate).
IMPORT_ALL_TIMEOUT_S = 300


def module_files() -> dict[str, Path]:
    """Every module of the package: dotted name → source file."""
    out: dict[str, Path] = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_in(tree: ast.Module, *, type_checking: bool = False,
               functions: bool = False) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements of a module, in source order.

    By default only those that run when the module is imported: module-level ones, also
    inside ``if`` / ``try`` / ``with`` / ``for`` blocks and class bodies, not inside functions
    and not under ``if TYPE_CHECKING:``.

    Args:
        tree: the parsed module.
        type_checking: also the imports under ``if TYPE_CHECKING:`` (declared dependencies).
        functions: also the imports inside functions and methods (deferred ones).
    """
    def walk(stmts: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
        for node in stmts:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield node
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if functions:
                    yield from walk(node.body)
            elif isinstance(node, ast.If):
                if type_checking or not _is_type_checking(node.test):
                    yield from walk(node.body)
                yield from walk(node.orelse)
            else:
                for name in ("body", "orelse", "finalbody"):
                    yield from walk(getattr(node, name, None) or [])
                for sub in (getattr(node, "handlers", None) or []) + (
                        getattr(node, "cases", None) or []):
                    yield from walk(sub.body)

    yield from walk(tree.body)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module name of a ``from ... import`` (relative ones resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def import_graph(files: dict[str, Path], **which: bool) -> dict[str, set[str]]:
    """Module → the package's modules its imports load (see the module doc).

    Args:
        files: :func:`module_files`.
        which: passed to :func:`imports_in` (default: the imports that run at import time).
    """
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        targets: set[str] = set()
        for node in imports_in(ast.parse(path.read_text(), str(path)), **which):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            else:
                base = _resolve(mod, is_pkg, node)
                targets.add(base)
                # ``from pkg import sub`` imports the submodule ``pkg.sub``
                targets.update(f"{base}.{a.name}" for a in node.names
                               if f"{base}.{a.name}" in files)
        edges: set[str] = set()
        for t in targets:
            parts = t.split(".")
            for k in range(1, len(parts) + 1):
                dep = ".".join(parts[:k])
                above_self = mod == dep or mod.startswith(dep + ".")
                if dep in files and not above_self:
                    edges.add(dep)
        graph[mod] = edges
    return graph


def subpackage_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """``graph`` with every module merged into its subpackage (``trustrec.data.x`` →
    ``trustrec.data``); self-edges dropped."""
    def top(mod: str) -> str:
        return ".".join(mod.split(".")[:2])

    out: dict[str, set[str]] = {}
    for mod, deps in graph.items():
        out.setdefault(top(mod), set()).update(top(d) for d in deps)
    for node, deps in out.items():
        deps.discard(node)
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None (iterative DFS)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    for start in sorted(graph):
        if state.get(start):
            continue
        path = [start]
        iters = [iter(sorted(graph[start]))]
        state[start] = 1
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(sorted(graph.get(nxt, ()))))
    return None


# ---------------------------------------------------------------------------- the checker
_SAMPLE = (
    "from __future__ import annotations\n"
    "import trustrec.a.b\n"
    "from . import c\n"
    "from .d import x\n"
    "from typing import TYPE_CHECKING\n"
    "if TYPE_CHECKING:\n    import trustrec.e\n"
    "try:\n    import trustrec.f\nexcept ImportError:\n    import trustrec.g\n"
    "def h():\n    import trustrec.h\n"
    "class K:\n    import trustrec.k\n    def m(self):\n        import trustrec.m\n"
)


def _names(**which: bool) -> list[str | None]:
    return [n.module if isinstance(n, ast.ImportFrom) else n.names[0].name
            for n in imports_in(ast.parse(_SAMPLE), **which)]


def test_the_import_finder_sees_what_runs_and_only_that():
    run = ["__future__", "trustrec.a.b", None, "d", "typing", "trustrec.f", "trustrec.g",
           "trustrec.k"]
    assert _names() == run
    assert set(_names(type_checking=True)) - set(run) == {"trustrec.e"}
    assert set(_names(functions=True)) - set(run) == {"trustrec.h", "trustrec.m"}


def test_relative_imports_and_submodules_become_edges(tmp_path):
    pkg = tmp_path / "trustrec"
    for rel, text in {"__init__.py": "", "p/__init__.py": "from . import m\n",
                      "p/m.py": "from . import n\nfrom .n import x\n",
                      "p/n.py": "import trustrec.q.r\n", "q/__init__.py": "",
                      "q/r.py": "from trustrec.p import m\n"}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    files = {}
    for path in sorted(pkg.rglob("*.py")):
        rel = path.relative_to(tmp_path).with_suffix("")
        files[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = path
    graph = import_graph(files)
    assert graph["trustrec.p"] == {"trustrec.p.m"}
    assert graph["trustrec.p.m"] == {"trustrec.p.n"}  # its own package is not an edge
    assert graph["trustrec.p.n"] == {"trustrec.q", "trustrec.q.r"}  # q/__init__ runs first
    assert graph["trustrec.q.r"] == {"trustrec.p", "trustrec.p.m"}
    assert find_cycle(graph) == ["trustrec.p", "trustrec.p.m", "trustrec.p.n",
                                 "trustrec.q.r", "trustrec.p"]
    assert subpackage_graph(graph) == {"trustrec.p": {"trustrec.q"},
                                       "trustrec.q": {"trustrec.p"}, "trustrec": set()}


def test_the_cycle_finder_finds_cycles_and_only_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None  # a diamond
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"y"}, "y": {"y"}}) == ["y", "y"]


# ---------------------------------------------------------------------------- the package
def test_no_import_cycle_between_modules():
    """The imports that run at import time form no cycle."""
    graph = import_graph(module_files())
    assert len(graph) >= 50 and "trustrec.data.request" in graph["trustrec.unlearn.base"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_cycle_between_subpackages_even_for_type_checkers():
    """Subpackages depend on each other one way, counting the imports made for type
    checkers too (``trustrec.data`` once named ``trustrec.unlearn`` for ForgetRequest)."""
    graph = subpackage_graph(import_graph(module_files(), type_checking=True))
    assert "trustrec.data" in graph["trustrec.unlearn"]
    cycle = find_cycle(graph)
    assert cycle is None, "subpackage cycle: " + " -> ".join(cycle or [])


#: What the data layer may import: itself and the shared helpers below every layer.
DATA_LAYER_MAY_IMPORT = ("trustrec.data", "trustrec.errors", "trustrec.seeding",
                         "trustrec.registry", "trustrec.config", "trustrec.fileio",
                         "trustrec.threads")


def test_the_data_layer_imports_nothing_above_it():
    """No import in ``trustrec.data`` (at import time, for type checkers, or deferred inside
    a function) names a module of a higher layer."""
    graph = import_graph(module_files(), type_checking=True, functions=True)
    bad = {mod: sorted(d for d in deps
                       if d != PACKAGE and not d.startswith(DATA_LAYER_MAY_IMPORT))
           for mod, deps in graph.items() if mod.startswith("trustrec.data")}
    assert len(bad) >= 10
    assert not {m: d for m, d in bad.items() if d}


def test_forget_request_lives_in_the_data_layer_and_the_old_path_still_works():
    from trustrec.data import ForgetRequest as A
    from trustrec.data.request import ForgetRequest as B
    from trustrec.unlearn import ForgetRequest as C
    from trustrec.unlearn.request import ForgetRequest as D

    assert A is B is C is D and A.__module__ == "trustrec.data.request"


def _env() -> dict[str, str]:
    """This process's environment, with the package under test first on the path."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT.parent), *filter(None, [os.environ.get("PYTHONPATH")])])}


def _run(code: str) -> subprocess.CompletedProcess[str]:
    """``python -c code`` in a fresh interpreter that imports the package under test."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=IMPORT_ALL_TIMEOUT_S, check=False, env=_env())


def test_every_module_imports_in_a_fresh_interpreter():
    """Import each module (sorted by name) in one new interpreter: a module that fails to
    import fails here with its traceback."""
    names = sorted(module_files())
    res = _run("import importlib, sys\n"
               f"for name in {names!r}:\n"
               "    importlib.import_module(name)\n"
               f"assert sys.modules[{PACKAGE!r}].__file__ == {trustrec.__file__!r}\n"
               "print('imported', len(sys.modules))\n")
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.startswith("imported")


@pytest.mark.parametrize("name", ["trustrec.data", "trustrec.data.request"])
def test_the_data_layer_imports_without_the_model_stack(name):
    """Importing the data layer alone loads neither torch nor the unlearning package."""
    res = _run(f"import sys, importlib; importlib.import_module({name!r}); "
               "print(sorted(m for m in ('torch', 'trustrec.unlearn', 'trustrec.models') "
               "if m in sys.modules))")
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() == "[]"


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def trustrec_names(path: Path) -> Iterator[tuple[str, str]]:
    """``(module, name)`` of every ``from trustrec... import name`` in a file, wherever it
    stands (benchmark scripts import inside functions too)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
            for alias in node.names:
                yield node.module, alias.name


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("*.py")))
def test_benchmark_scripts_import_what_exists(script):
    """A benchmark script is run by hand, rarely: a name moved in the package must not
    leave it broken until someone runs it (one was, after a move)."""
    import importlib

    missing = []
    for module, name in trustrec_names(BENCHMARKS / script):
        mod = importlib.import_module(module)
        if not hasattr(mod, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"{module}.{name}")
    assert not missing, f"{script} imports names that do not exist: {missing}"
