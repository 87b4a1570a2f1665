"""Read the import graph of ``src/qualitylab`` and say where it breaks the layering.

The rules (``ARCHITECTURE.md``):

* a module imports only from its own layer package and from lower layers
  (lazy imports inside functions count);
* no import cycles between modules;
* no private (``_name``) name imported or read from another module;
* inside the library, no module is imported by its short name
  (``qualitylab.metrics``): short names are for users, homes show the layer;
* no blanket warning filter (``simplefilter("ignore")`` or
  ``filterwarnings("ignore")`` naming neither a message nor a category);
* no module longer than :data:`MAX_LINES` unless it is listed in
  :data:`LONG_MODULES` with the reason it is one job.

Everything is read with :mod:`ast` from the files; nothing is imported, so a
fixture tree with a bad import can be checked as well as the real one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Layer packages, bottom first. Packages on the same level are siblings and
#: must not import each other.
LAYERS: dict[str, int] = {
    "errors": 0,
    "version": 0,
    "data": 1,
    "measure": 2,
    "detection": 3,
    "operations": 4,
    "reporting": 5,
    "demodata": 5,
    "runs": 6,
}

MAX_LINES = 1200

#: Modules allowed over MAX_LINES, each with why it is one job.
LONG_MODULES: dict[str, str] = {}


@dataclass(frozen=True)
class Module:
    """One source file: its dotted name, path and layer."""

    name: str
    path: Path
    layer: str | None  # None for the package root

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"


def modules(root: Path, package: str = "qualitylab") -> dict[str, Module]:
    """Every ``.py`` file under ``root`` (the package directory), by dotted name."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join((package, *parts))
        layer = None if not parts else parts[0]
        out[name] = Module(name, path, layer)
    return out


def short_names(root: Path) -> dict[str, str]:
    """The root package's ``MODULES`` mapping (short name -> home), read from its source."""
    tree = ast.parse((root / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(getattr(t, "id", None) == "MODULES" for t in targets):
                return ast.literal_eval(node.value)
    return {}


@dataclass(frozen=True)
class Edge:
    """One import: from module ``source`` (at ``line``) of ``target``, naming ``names``."""

    source: str
    target: str
    line: int
    names: tuple[str, ...]
    via_short_name: bool


def _resolve(target: str, mods: dict[str, Module], short: dict[str, str]) -> tuple[str, bool]:
    parts = target.split(".")
    if len(parts) >= 2 and parts[1] in short and target not in mods:
        return short[parts[1]] + "".join("." + p for p in parts[2:]), True
    return target, False


def edges(mods: dict[str, Module], short: dict[str, str], package: str = "qualitylab"):
    """Every import of a package module by a package module, lazy ones included."""
    for mod in mods.values():
        tree = ast.parse(mod.path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                base = node.module
                if base.split(".")[0] != package:
                    continue
                for alias in node.names:
                    full, short_used = _resolve(f"{base}.{alias.name}", mods, short)
                    if full in mods:  # ``from pkg import module``
                        yield Edge(mod.name, full, node.lineno, (), short_used)
                    else:
                        tgt, short_used = _resolve(base, mods, short)
                        yield Edge(mod.name, tgt, node.lineno, (alias.name,), short_used)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == package:
                        tgt, short_used = _resolve(alias.name, mods, short)
                        yield Edge(mod.name, tgt, node.lineno, (), short_used)


def _private_reads(mod: Module, mods: dict[str, Module], short: dict[str, str]) -> Iterator[str]:
    """``alias._name`` where ``alias`` is another package module bound by an import."""
    tree = ast.parse(mod.path.read_text())
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full, _ = _resolve(f"{node.module}.{alias.name}", mods, short)
                if full in mods:
                    bound[alias.asname or alias.name] = full
        elif isinstance(node, ast.Import):
            for alias in node.names:
                full, _ = _resolve(alias.name, mods, short)
                if full in mods and alias.asname:
                    bound[alias.asname] = full
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in bound
            and bound[node.value.id] != mod.name
            and _is_private(node.attr)
        ):
            yield f"{mod.name}:{node.lineno} reads {bound[node.value.id]}.{node.attr}"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _blanket_filters(mod: Module) -> Iterator[str]:
    tree = ast.parse(mod.path.read_text())
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        fn = node.func.attr
        if fn not in ("simplefilter", "filterwarnings"):
            continue
        action = node.args[0] if node.args else None
        if not (isinstance(action, ast.Constant) and action.value == "ignore"):
            continue
        named = {k.arg for k in node.keywords} & {"message", "category", "module"}
        if fn == "filterwarnings" and (named or len(node.args) > 1):
            continue  # one named warning
        yield f"{mod.name}:{node.lineno} warnings.{fn}('ignore') with no named warning"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def problems(root: Path, package: str = "qualitylab") -> list[str]:
    """Every break of the rules in the package at ``root``, one line each."""
    mods = modules(root, package)
    short = short_names(root)
    out: list[str] = []
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for e in edges(mods, short, package):
        src, tgt = mods[e.source], mods.get(e.target)
        if tgt is None:
            out.append(f"{e.source}:{e.line} imports {e.target}, which is not a module")
            continue
        if e.target != e.source:
            graph[e.source].add(e.target)
        if src.layer is None:
            continue  # the package root is the public front door: it may import anything
        if e.via_short_name:
            out.append(f"{e.source}:{e.line} imports {e.target} by its short name")
        if tgt.layer is None:
            out.append(f"{e.source}:{e.line} imports the package root")
        elif tgt.layer != src.layer and LAYERS.get(tgt.layer, 99) >= LAYERS.get(src.layer, -1):
            out.append(
                f"{e.source}:{e.line} ({src.layer}) imports {e.target} ({tgt.layer}):"
                " an import that does not go down the layers"
            )
        for name in e.names:
            if _is_private(name) and e.target != e.source:
                out.append(f"{e.source}:{e.line} imports private {e.target}.{name}")
    for mod in mods.values():
        if mod.layer is not None and mod.layer not in LAYERS:
            out.append(f"{mod.name}: layer {mod.layer!r} is not in LAYERS")
        out.extend(_private_reads(mod, mods, short))
        out.extend(_blanket_filters(mod))
        rel = mod.path.relative_to(root).as_posix()
        lines = mod.path.read_text().count("\n")
        if lines > MAX_LINES and rel not in LONG_MODULES:
            out.append(f"{mod.name}: {lines} lines (over {MAX_LINES}; split it by job)")
    for comp in cycles(graph):
        out.append("import cycle: " + " <-> ".join(comp))
    return out
