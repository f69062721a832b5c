"""The package's architecture rules, read from the source (AST only: nothing is imported).

1. Layers run one way: ``diffusion_gym`` ← ``baselines`` ← ``agents``. ``diffusion_gym``
   imports neither ``baselines`` nor ``agents``; ``baselines`` does not import ``agents``.
   Module-level and function-local ``import``/``from`` statements count, and so do
   ``importlib.import_module("literal")`` calls and strings that name a module for a later
   dynamic import (``"pkg.mod:attr"`` entry points, ``"pkg.mod"`` in a dispatch table).
2. No function-local import, except of the optional extras in :data:`OPTIONAL_EXTRAS` (a
   function-local import that only dodges a cycle means the code sits in the wrong layer).
3. No import cycle between the modules of one top-level package. The graph holds every
   ``import`` statement, function-local ones included (a cycle closed by a local import is
   still a cycle); left out are imports under ``if TYPE_CHECKING:`` (annotations only) and
   entry-point strings (names in a registry table, resolved when used, as gymnasium's
   ``entry_point``: they are data, not imports).
4. No class defined inside a function body.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("diffusion_gym", "baselines", "agents")

#: Top-level packages each layer must not import.
FORBIDDEN = {"diffusion_gym": {"baselines", "agents"}, "baselines": {"agents"}, "agents": set()}

#: Optional extras (not in the core dependencies): the only function-local imports allowed.
OPTIONAL_EXTRAS = frozenset(
    {"diffusers", "transformers", "huggingface_hub", "ray", "rl_zoo3", "optuna", "wandb", "cupy"}
)

_ENTRY_POINT = re.compile(r"^([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*):[A-Za-z_]\w*$")


def _top(name: str) -> str:
    return name.split(".")[0]


@dataclass(frozen=True)
class Import:
    """One import of ``target`` (absolute module name) at ``path:line``."""

    source: str
    target: str
    path: str
    line: int
    local: bool  # inside a function body
    type_checking: bool  # under ``if TYPE_CHECKING:``
    kind: str  # "import", "import_module" or "entry point"


@dataclass
class Scan:
    modules: dict[str, Path] = field(default_factory=dict)
    imports: list[Import] = field(default_factory=list)
    nested_classes: list[str] = field(default_factory=list)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Visitor(ast.NodeVisitor):
    """Collects imports (with their context) and classes nested in functions of one file."""

    def __init__(self, module: str, is_package: bool, path: str, modules: set[str]):
        self.module, self.path, self.modules = module, path, modules
        self.package = module if is_package else module.rpartition(".")[0]
        self.depth = 0  # enclosing function bodies
        self.type_checking = 0
        self.imports: list[Import] = []
        self.nested_classes: list[str] = []

    def _add(self, target: str, node: ast.AST, kind: str) -> None:
        self.imports.append(
            Import(
                self.module,
                target,
                self.path,
                node.lineno,
                self.depth > 0,
                self.type_checking > 0,
                kind,
            )
        )

    def _resolve(self, name: str | None, level: int) -> str:
        if level == 0:
            return name or ""
        base = self.package.split(".")
        base = base[: len(base) - (level - 1)]
        return ".".join(base + ([name] if name else []))

    def _function(self, node) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function  # noqa: N815

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if self.depth > 0:
            self.nested_classes.append(f"{self.path}:{node.lineno} class {node.name}")
        self.generic_visit(node)

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self.type_checking += 1
            for child in node.body:
                self.visit(child)
            self.type_checking -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node, "import")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._resolve(node.module, node.level)
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            self._add(sub if sub in self.modules else base, node, "import")

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in ("import_module", "__import__") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                target = arg.value
                if target.startswith("."):
                    level = len(target) - len(target.lstrip("."))
                    target = self._resolve(target.lstrip(".") or None, level)
                self._add(target, node, "import_module")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        """A string that names a module of the three packages for a later dynamic import: an
        entry point ``"pkg.mod:attr"`` or a dotted module name ``"pkg.mod"``."""
        if not isinstance(node.value, str):
            return
        m = _ENTRY_POINT.match(node.value)
        target = m.group(1) if m else node.value
        if (m or "." in target) and (target in self.modules or (m and _top(target) in PACKAGES)):
            self.imports.append(
                Import(self.module, target, self.path, node.lineno, False, False, "entry")
            )


@functools.cache
def scan() -> Scan:
    """Parse every ``.py`` file of the three packages once."""
    out = Scan()
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            out.modules[_module_name(path)] = path
    names = set(out.modules)
    for module, path in out.modules.items():
        rel = str(path.relative_to(ROOT))
        v = _Visitor(module, path.name == "__init__.py", rel, names)
        v.visit(ast.parse(path.read_text(), filename=rel))
        out.imports += v.imports
        out.nested_classes += v.nested_classes
    return out


def layer_violations(s: Scan) -> list[str]:
    return [
        f"{i.path}:{i.line} {i.source} imports {i.target} ({i.kind})"
        for i in s.imports
        if _top(i.target) in FORBIDDEN.get(_top(i.source), set())
    ]


def local_import_violations(s: Scan) -> list[str]:
    return [
        f"{i.path}:{i.line} imports {i.target} inside a function"
        for i in s.imports
        if i.local and i.kind != "entry" and _top(i.target) not in OPTIONAL_EXTRAS
    ]


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the strongly connected components of ``graph``."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                out.append(sorted(comp))
    return out


def cycle_violations(s: Scan) -> list[str]:
    graph: dict[str, set[str]] = {m: set() for m in s.modules}
    where: dict[tuple[str, str], str] = {}
    for i in s.imports:
        if i.type_checking or i.kind == "entry" or i.target not in graph or i.target == i.source:
            continue
        if _top(i.target) != _top(i.source):
            continue
        graph[i.source].add(i.target)
        where.setdefault((i.source, i.target), f"{i.path}:{i.line}")
    out = []
    for comp in _strongly_connected(graph):
        if len(comp) > 1:
            members = set(comp)
            edges = sorted(f"{a} -> {b} ({where[a, b]})" for a in comp for b in graph[a] & members)
            out.append(f"cycle {comp}: " + "; ".join(edges))
    return out


def _report(title: str, items: list[str]) -> str:
    return f"{len(items)} {title}:\n  " + "\n  ".join(items)


def test_scan_sees_the_packages():
    s = scan()
    assert {"diffusion_gym", "baselines", "agents", "diffusion_gym.steps"} <= set(s.modules)
    assert any(i.source == "diffusion_gym.steps" for i in s.imports)


def test_layers_run_one_way():
    bad = layer_violations(scan())
    assert not bad, _report("imports against diffusion_gym <- baselines <- agents", bad)


def test_no_function_local_imports():
    bad = local_import_violations(scan())
    assert not bad, _report(f"function-local imports (allowed: {sorted(OPTIONAL_EXTRAS)})", bad)


def test_no_import_cycles_inside_a_package():
    bad = cycle_violations(scan())
    assert not bad, _report("import cycles", bad)


def test_no_class_defined_inside_a_function():
    bad = scan().nested_classes
    assert not bad, _report("classes defined inside a function", bad)


# ---------------------------------------------------------------------------------------------
# The checker itself, on small made-up sources


def _scan_source(module: str, source: str, modules: set[str], is_package=False) -> _Visitor:
    v = _Visitor(module, is_package, module.replace(".", "/") + ".py", modules)
    v.visit(ast.parse(source))
    return v


def test_checker_resolves_relative_imports_and_submodules():
    mods = {"pkg", "pkg.a", "pkg.sub", "pkg.sub.b", "pkg.sub.c"}
    v = _scan_source(
        "pkg.sub.b",
        "from . import c\nfrom .. import a\nfrom ..a import X\nfrom . import helper\n"
        "import importlib\nimportlib.import_module('agents.x')\n"
        "def f():\n    from .c import Y\n    class K: pass\n"
        "if TYPE_CHECKING:\n    from pkg import a\n"
        "ENTRY = 'baselines.m:func'\nTABLE = {'x': ('pkg.a', 'main')}\nDOC = 'pkg.zz'\n",
        mods,
    )
    got = [(i.target, i.local, i.type_checking, i.kind) for i in v.imports]
    assert got == [
        ("pkg.sub.c", False, False, "import"),
        ("pkg.a", False, False, "import"),
        ("pkg.a", False, False, "import"),
        ("pkg.sub", False, False, "import"),  # a name of the package, not a submodule
        ("importlib", False, False, "import"),
        ("agents.x", False, False, "import_module"),
        ("pkg.sub.c", True, False, "import"),
        ("pkg.a", False, True, "import"),
        ("baselines.m", False, False, "entry"),
        ("pkg.a", False, False, "entry"),
    ]
    assert v.nested_classes == ["pkg/sub/b.py:9 class K"]


def test_checker_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert sorted(c for c in _strongly_connected(graph) if len(c) > 1) == [["a", "b", "c"]]
