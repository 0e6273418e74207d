"""The package graph is the design: every shelfops module belongs to a layer, and imports only
from its own layer or the layers below it, whether the import sits at the top of the module or
inside a function (a function-level import may delay loading a heavy engine; it may not dodge a
cycle). A new package must be placed in LAYERS before anything can import it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "shelfops"

#: bottom to top; a module imports only from its own layer or those before it
LAYERS: list[tuple[str, ...]] = [
    ("__init__", "errors", "redact", "logs", "tasks", "plain"),  # the version, the one exception tree,
    # secrets kept in, logging, the one task list, tokens and JSON values
    ("tables",),  # the canonical tables every stage reads
    ("artifacts",),  # stage folders, manifest last, checksums
    ("config",),  # schemas and loading: the one source of defaults
    ("eval",),  # metrics, bootstrap, agreement between rankings
    ("data",),  # ①
    ("train",),  # ②
    ("optimize",),  # ③
    ("gate",),  # ④
    ("registry",),  # ⑤
    ("serve",),  # ⑥
    ("monitor",),  # ⑦
    ("sim",),  # the shoppers replayed against a server
    ("demo",),  # the story, its report and timing, the stages in order
    ("cli", "__main__"),  # thin commands
]
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}


def unit(module: str) -> str:
    """``shelfops.train.search`` -> ``train``; ``shelfops.demo.story`` -> ``demo``; ``shelfops`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        name = ".".join(rel.parts)
        out.append((name.removesuffix(".__init__"), path))
    return out


def imports(path: Path, module: str) -> list[tuple[str, int, bool]]:
    """(imported shelfops module, line, inside a function) for every import in the file."""
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom):
                if child.level:  # relative: resolve against this module's package
                    base = module.split(".")
                    base = base[: len(base) - child.level + (1 if path.name == "__init__.py" else 0)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                names = [target] + [f"{target}.{a.name}" for a in child.names]
                for t in names[:1] if target != "shelfops" else names[1:]:
                    if t == "shelfops" or t.startswith("shelfops."):
                        found.append((t, child.lineno, in_function))
            elif isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names
                             if a.name == "shelfops" or a.name.startswith("shelfops."))
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def test_every_module_has_a_layer():
    unplaced = sorted({unit(m) for m, _ in modules()} - set(LEVEL))
    assert not unplaced, f"place these in LAYERS (tests/unit/test_layers.py): {unplaced}"


def test_imports_only_go_down():
    upward = []
    for module, path in modules():
        src = unit(module)
        for target, line, in_function in imports(path, module):
            dst = unit(target)
            if dst in LEVEL and LEVEL[dst] > LEVEL[src]:
                where = "inside a function" if in_function else "at module level"
                upward.append(f"{path.relative_to(ROOT.parent)}:{line} {src} -> {dst} ({target}, {where})")
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


def test_the_contract_catches_an_upward_import(tmp_path):
    """The checker itself: a stage module importing a later stage, even inside a function, is found."""
    f = tmp_path / "bad.py"
    f.write_text("def later():\n    from shelfops.serve.app import create_app\n    return create_app\n")
    (target, line, in_function), = imports(f, "shelfops.train.bad")
    assert (unit(target), line, in_function) == ("serve", 2, True)
    assert LEVEL[unit(target)] > LEVEL[unit("shelfops.train.bad")]
    g = tmp_path / "__init__.py"
    g.write_text("from . import metrics\nfrom ..config import schema\n")
    assert [t for t, _, _ in imports(g, "shelfops.eval")] == ["shelfops.eval", "shelfops.config"]


@pytest.mark.parametrize("module", ["shelfops.serve.app", "shelfops"])
def test_unit_names_the_layer(module):
    assert unit(module) in LEVEL
