"""The packages import in one direction, read from the code: the composition root at the top, the features
below it, the shared figures and switch parsing below them, app/web/ as the ground, and model/ under all of
it, importing nothing from app/. A command's `if __name__ == "__main__":` block is the top of its own graph
and is not counted."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Top to bottom: a module may import its own package and any layer below its own, never one above.
LAYERS = (
    ("app.main",),
    ("app.factory",),
    ("app.classroom",),
    ("app.teaching",),
    ("app.playground",),
    ("app.lab",),
    ("app.figures", "app.switches"),
    ("app.web",),
    ("model",),
)
RANK = {package: rank for rank, names in enumerate(LAYERS) for package in names}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[0] if parts[0] == "model" else ".".join(parts[:2])


def _is_main_block(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and getattr(node.test.left, "id", None) == "__name__")


def imports_of(path: Path) -> set[str]:
    """Every app./model. module a file imports (`from app import figures` is app.figures), at any depth of the
    file but its __main__ block."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = [n for top in tree.body if not _is_main_block(top) for n in ast.walk(top)]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"app.{a.name}" for a in node.names} if node.module == "app" else {node.module}
    return {name for name in found if name.split(".")[0] in ("app", "model")}


def edges() -> list[tuple[str, str]]:
    pairs = []
    for top in ("app", "model"):
        for path in sorted((ROOT / top).rglob("*.py")):
            module = _module_name(path)
            if module == "app":
                continue
            pairs += [(module, imported) for imported in imports_of(path)]
    return pairs


def test_every_package_has_its_layer():
    packages = {_package(m) for pair in edges() for m in pair} - {"app"}
    assert packages <= set(RANK), f"packages without a layer in LAYERS: {sorted(packages - set(RANK))}"


def test_no_import_runs_back_up():
    upward = [f"{a} imports {b}" for a, b in edges()
              if _package(a) != _package(b) and RANK[_package(b)] < RANK[_package(a)]]
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_the_test_sees_imports_inside_functions_and_from_app():
    seen = imports_of(ROOT / "app" / "lab" / "routes.py")
    assert "app.figures" in seen and "app.lab.runs" in seen
    assert "app.teaching.ship_results" not in imports_of(ROOT / "app" / "lab" / "results.py")  # its __main__ only
    assert any(a.startswith("app.factory") and b.startswith("app.classroom") for a, b in edges())
