"""The repository's shape, as a newcomer relies on it: the app uses only the engine's public API, evaluation never
imports training, no module reaches into another's private names, the engine's modules import without a cycle, and
no engine file grows past a readable size."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 400


def modules(folder: str) -> dict[str, ast.Module]:
    out = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = ast.parse(path.read_text(), str(path))
    return out


def imports(name: str, tree: ast.Module) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import in the file, relative ones resolved."""
    package = name.split(".") if tree_is_package(name) else name.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.append((mod, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
    return found


def tree_is_package(name: str) -> bool:
    return (ROOT / Path(*name.split(".")) / "__init__.py").exists()


def test_the_app_uses_only_the_engines_public_api():
    import engine
    for name, tree in modules("app").items():
        for mod, names in imports(name, tree):
            if mod.startswith("engine"):
                assert mod == "engine", f"{name} imports {mod}: use the public API in engine/__init__.py"
                assert set(names) <= set(engine.__all__), f"{name} imports {set(names) - set(engine.__all__)}"


def test_evaluation_never_imports_training_and_no_one_imports_private_names():
    for name, tree in modules("engine").items():
        for mod, names in imports(name, tree):
            if name.startswith("engine.eval"):
                assert not mod.startswith("engine.train"), f"{name} imports {mod}"
            assert not [n for n in names if n.startswith("_") and n != "__version__"], f"{name}: {mod}.{names}"


def test_the_engine_has_no_import_cycle_and_no_overlong_file():
    mods = modules("engine")
    graph = {name: {m for m, _ in imports(name, tree) if m in mods and m != name} for name, tree in mods.items()}
    for name, tree in mods.items():  # "from . import x" names a submodule
        for mod, names in imports(name, tree):
            graph[name] |= {f"{mod}.{n}" for n in names if f"{mod}.{n}" in mods and f"{mod}.{n}" != name}
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> None:
        state[n] = 1
        for m in graph[n]:
            if m.startswith(n + "."):  # a package importing its own submodules is not a cycle
                continue
            assert state.get(m) != 1 or n.startswith(m + "."), f"import cycle: {' -> '.join([*path, m])}"
            if m not in state:
                visit(m, [*path, m])
        state[n] = 2

    for n in graph:
        if n not in state:
            visit(n, [n])
    long = {p.name: n for p in (ROOT / "engine").rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"engine files over {MAX_LINES} lines: {long}"
