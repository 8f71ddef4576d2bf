#!/usr/bin/env python3
"""Print the shape of the code: modules per package, the longest functions, import cycles and
imports that point up the layering (core -> CLI, or a lower layer -> a higher one).

    python scripts/arch_report.py [REPO_ROOT] [--json]

Every import statement counts, top-level or inside a function. Layers follow ARCHITECTURE.md:
a module may import its own package and the packages below it, never one above.
"""

from __future__ import annotations

import ast
import json
import sys
from collections import Counter
from pathlib import Path

PACKAGES = ("harness", "leaderboard")
# Lowest first. A module imports only from its own layer or below; the CLI sits on top.
LAYERS = (
    ("harness.registry", "harness.paths", "harness.text"),
    ("harness.specs", "harness.records"),
    ("harness.data", "harness.metrics", "harness.metering"),
    ("harness.models", "harness.techniques"),
    ("harness.pipeline",),
    ("harness.analysis", "harness.scale"),
    ("leaderboard",),
    ("harness.cli",),
)
# The flat modules of the first layout, placed where their code lives now, so that the script
# measures older checkouts by the same rule.
FLAT = {
    1: ("yamlio", "specs", "suites", "submission", "records", "storage", "provenance"),
    2: ("data", "concepts", "synthetic_images", "metrics", "wordnet", "stats", "meters"),
    3: ("families", "twins", "random_weights", "build", "training", "bundled_sample"),
    4: ("generate", "run", "plan"),
    5: ("regress", "lm_eval_export", "sweep", "distributed"),
}
LAYERS = tuple(
    (*prefixes, *(f"harness.{m}" for m in FLAT.get(i, ()))) for i, prefixes in enumerate(LAYERS)
)


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        for target in targets:
            # the deepest known module the import names
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def layer(name: str) -> int:
    if name == "harness":  # the package itself: its version
        return 0
    best = (-1, 0)
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if name == prefix or name.startswith(prefix + "."):
                best = max(best, (len(prefix), index))
    return best[1] if best[0] >= 0 else 2  # unlisted top-level harness modules: the middle


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def longest_functions(known: dict[str, Path], n: int = 5) -> list[tuple[int, str]]:
    sizes = []
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                sizes.append((node.end_lineno - node.lineno + 1, f"{name}.{node.name}"))
    return sorted(sizes, reverse=True)[:n]


def report(root: Path) -> dict[str, object]:
    known = modules(root)
    graph = {name: imports(name, path, known) for name, path in known.items()}
    upward = sorted(
        f"{a} -> {b}" for a, targets in graph.items() for b in targets if layer(b) > layer(a)
    )
    per_package = Counter(
        ".".join(name.split(".")[:2])
        if name.count(".") >= 1 and known[name].parent.name != name.split(".")[0]
        else name.split(".")[0] + " (top level)"
        for name in known
    )
    lines = {
        name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in known.items()
    }
    return {
        "modules": len(known),
        "modules_per_package": dict(sorted(per_package.items())),
        "largest_modules": sorted(((v, k) for k, v in lines.items()), reverse=True)[:5],
        "longest_functions": longest_functions(known),
        "import_cycles": cycles(graph),
        "upward_imports": upward,
    }


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    result = report(Path(args[0] if args else "."))
    if "--json" in argv:
        print(json.dumps(result, indent=2))
        return 0
    print(f"modules: {result['modules']}")
    for package, count in result["modules_per_package"].items():  # type: ignore[union-attr]
        print(f"  {package:28} {count}")
    print("largest modules (lines):")
    for size, name in result["largest_modules"]:  # type: ignore[union-attr]
        print(f"  {size:5}  {name}")
    print("longest functions (lines):")
    for size, name in result["longest_functions"]:  # type: ignore[union-attr]
        print(f"  {size:5}  {name}")
    print(f"import cycles: {len(result['import_cycles'])}")  # type: ignore[arg-type]
    for cycle in result["import_cycles"]:  # type: ignore[union-attr]
        print("  " + " <-> ".join(cycle))
    print(f"upward imports: {len(result['upward_imports'])}")  # type: ignore[arg-type]
    for edge in result["upward_imports"]:  # type: ignore[union-attr]
        print("  " + edge)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
