"""The architecture: every import inside rnncli, module level or inside a function, goes to the
importer's own layer or one below it (the order is the README's Layout, tests/test_layout.py), and
no modules import each other in a circle.

Read from the source (ast), so a lazy import inside a function counts as much as one at the top."""

import ast
from pathlib import Path

from tests.test_layout import LAYERS

PACKAGE = Path(__file__).resolve().parents[1] / "rnncli"


def module_name(path: Path) -> str:
    parts = ["rnncli", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """The rnncli modules a file imports: `from rnncli.x import y` counts rnncli.x.y when that is a
    module, else rnncli.x."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("rnncli")}
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("rnncli")
            and not node.level
        ):
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            found |= subs or {node.module}
    return {m for m in found if m in known}


def layer(module: str) -> int | None:
    """The layer's index, top (0) to bottom; None for the package root (rnncli, rnncli.__main__)."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(p, set(mods)) - {m} for m, p in mods.items()}


def test_every_module_belongs_to_a_layer_or_is_the_root():
    stray = [m for m in modules() if layer(m) is None and m not in ("rnncli", "rnncli.__main__")]
    assert not stray, f"modules outside every layer folder: {stray}"


def test_no_import_runs_up_a_layer():
    up = sorted(
        f"{m} ({LAYERS[layer(m)]}) imports {t} ({LAYERS[layer(t)]})"
        for m, targets in graph().items()
        if layer(m) is not None
        for t in targets
        if layer(t) is not None and layer(t) < layer(m)
    )
    assert not up, "imports that run up a layer:\n" + "\n".join(up)


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm, iteratively)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    for root in g:
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        top = stack.pop()
                        on.discard(top)
                        group.append(top)
                        if top == node:
                            break
                    if len(group) > 1:
                        out.append(sorted(group))
            elif child not in index:
                index[child] = low[child] = counter[0]
                counter[0] += 1
                stack.append(child)
                on.add(child)
                work.append((child, iter(sorted(g.get(child, ())))))
            elif child in on:
                low[node] = min(low[node], index[child])
    return out


def test_no_modules_import_each_other_in_a_circle():
    found = cycles(graph())
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_checks_catch_what_they_are_for():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert layer("rnncli.cli.app") < layer("rnncli.base.errors")
