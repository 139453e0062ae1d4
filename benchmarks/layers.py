"""How ``helpers`` holds together as a house: the layers, and what crosses them.

    python benchmarks/layers.py            # the counts
    python benchmarks/layers.py --list     # and every import that breaks a rule, with file and line

Reads the source with :mod:`ast` (nothing is imported) and counts, over every import of a ``helpers`` module
(module-level and inside functions alike, since both tie the modules together at run time):

* **cycles**: groups of modules that import each other (strongly connected components of more than one module);
* **upward**: imports from a lower layer to a higher one (:data:`LAYERS`); each must carry a ``# layer:`` comment
  that says why, on its line or the line above;
* **function-level**: imports of the project's own modules inside a function body (they hide a dependency from a
  reader of the module's head, and usually dodge a cycle);
* **large modules**: over :data:`MAX_LINES` lines, unless :data:`LARGE_OK` says which one concern needs the size.

``tests/test_layers.py`` holds the package to these rules.
"""
from __future__ import annotations

import argparse
import ast
import collections
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "helpers"

#: module prefix -> layer; the longest matching prefix wins; unlisted modules are the library (1)
LAYERS = {
    # 0: foundation, imported by everything
    "helpers": 0, "helpers.names": 0, "helpers.paths": 0, "helpers.threads": 0, "helpers.booktext": 0,
    "helpers.compat": 0,
    # 1: the library (data, transforms, models, sources, trainer, metrics, scoring, similarity, evaluation, ...)
    # 2: the stages: each declares its units
    "helpers.stages": 2,
    # 3: the engines that run units
    "helpers.engines": 3,
    # 4: orchestration: run stages on an engine, plan them
    "helpers.orchestration": 4,
    # 5: applications and faces: the command lines, the book builder, ranking your own models, old names
    "helpers.run": 5, "helpers.book": 5, "helpers.browsercheck": 5, "helpers.rank": 5,
    "helpers.benchmarks.__main__": 5, "helpers.training": 5, "helpers.engine": 5,
}
LAYER_NAMES = {0: "foundation", 1: "library", 2: "stages", 3: "engines", 4: "orchestration", 5: "applications"}
MAX_LINES = 800
#: modules allowed over MAX_LINES, and the one concern that needs the size
LARGE_OK: dict[str, str] = {}


def layer(module: str) -> int:
    best, value = "", 1
    for prefix, lay in LAYERS.items():
        covers = module == prefix or (prefix != "helpers" and module.startswith(prefix + "."))
        if covers and len(prefix) > len(best):
            best, value = prefix, lay
    return value


def modules(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _targets(module: str, node, is_package: bool, known) -> list[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = module.split(".") if is_package else module.split(".")[:-1]
        if node.level > 1:
            base = base[:len(base) - (node.level - 1)]
        prefix = ".".join(base + [node.module]) if node.level and node.module else (
            ".".join(base) if node.level else node.module or "")
        names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix for a in node.names]
    out = []
    for name in names:
        if name.split(".")[0] != "helpers":
            continue
        while name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        if name != module and name not in out:
            out.append(name)
    return out


def imports(root: Path = ROOT):
    """Every import of a helpers module: ``(module, target, line, in_function, reason)``; ``reason`` is the text
    of a ``# layer:`` comment on the import's line or the line above ('' when there is none)."""
    known = modules(root)
    found = []
    for module, path in known.items():
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))

        def walk(node, in_function):
            for child in ast.iter_child_nodes(node):
                inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    near = " ".join(lines[max(0, child.lineno - 2):child.end_lineno])
                    reason = near.split("# layer:", 1)[1].strip() if "# layer:" in near else ""
                    for target in _targets(module, child, path.name == "__init__.py", known):
                        found.append((module, target, child.lineno, in_function, reason))
                walk(child, inner)

        walk(tree, False)
    return found


def cycles(edges) -> list[list[str]]:
    graph = collections.defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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

    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))
    for v in sorted(list(graph)):
        if v not in index:
            visit(v)
    return sorted(out)


def compatibility_forwards(root: Path = ROOT) -> list[tuple[str, str, str]]:
    """``(old module, name, new module)`` for every deprecated name of ``helpers/compat.py``'s ``MOVED`` table
    (resolved at run time with a DeprecationWarning; listed, not counted as imports)."""
    path = root / "compat.py"
    if not path.exists():
        return []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "MOVED" for t in targets):
                moved = ast.literal_eval(node.value)
                return sorted((old, name, new) for old, names in moved.items() for name, new in names.items())
    return []


def measure(root: Path = ROOT) -> dict:
    found = imports(root)
    known = modules(root)
    edges = {(a, b) for a, b, *_ in found}
    upward = sorted({(a, b, line, reason) for a, b, line, _, reason in found if layer(b) > layer(a)})
    upward_pairs = sorted({(a, b) for a, b, *_ in upward})
    function_level = [(a, b, line) for a, b, line, inner, _ in found if inner]
    sizes = {m: len(p.read_text().splitlines()) for m, p in known.items()}
    large = {m: n for m, n in sizes.items() if n > MAX_LINES}
    return {"modules": len(known), "cycles": cycles(edges), "upward": upward,
            "upward_pairs": upward_pairs,
            # an import statement naming several helpers modules counts once
            "function_level": sorted(set(function_level)),
            "function_level_statements": len({(a, line) for a, _, line in function_level}),
            "compat": compatibility_forwards(root), "large": large, "large_unexplained": {m: n for m, n in large.items() if m not in LARGE_OK}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="list every import that breaks a rule")
    ap.add_argument("--root", type=Path, default=ROOT)
    ap.add_argument("--layer", action="append", default=[], metavar="MODULE=N",
                    help="put MODULE in layer N (to measure an older tree, where helpers.engine was the trainer)")
    args = ap.parse_args(argv)
    for item in args.layer:
        name, value = item.split("=")
        LAYERS[name] = int(value)
    m = measure(args.root)
    print(f"helpers modules: {m['modules']}")
    print(f"import cycles: {len(m['cycles'])}" + "".join(f"\n  {len(c)} modules: {', '.join(c)}"
                                                        for c in m["cycles"]))
    print(f"upward imports (lower layer -> higher): {len(m['upward_pairs'])} module pairs, "
          f"{len(m['upward'])} import statements")
    for a, b, line, reason in m["upward"]:
        print(f"  {a}:{line} -> {b} ({LAYER_NAMES[layer(a)]} -> {LAYER_NAMES[layer(b)]})"
              + (f"  # layer: {reason}" if reason else "  NO REASON GIVEN"))
    print(f"function-level imports of helpers modules: {m['function_level_statements']} statements")
    if args.list:
        for a, b, line in m["function_level"]:
            print(f"  {a}:{line} -> {b}")
    print(f"deprecated names forwarded by helpers.compat.MOVED: {len(m['compat'])}")
    by_old = collections.Counter((old, new) for old, _, new in m["compat"])
    for (old, new), n in sorted(by_old.items()):
        print(f"  {old} -> {new}: {n} names" + (" (to a higher layer)" if layer(new) > layer(old) else ""))
        if args.list:
            print("    " + ", ".join(name for o, name, w in m["compat"] if (o, w) == (old, new)))
    print(f"modules over {MAX_LINES} lines: {len(m['large'])}"
          + "".join(f"\n  {k}: {v}" + (f" ({LARGE_OK[k]})" if k in LARGE_OK else "") for k, v in
                    sorted(m["large"].items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
