"""The engine (`pipeline`) stands on its own: the project and the surfaces depend on it."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
    return modules


def test_pipeline_imports_nothing_from_the_project_or_the_surfaces():
    offending = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in (ROOT / "pipeline").rglob("*.py")
        for module in imported_modules(path)
        if module.split(".")[0] in {"gamed_console", "observability", "tests"}
    }
    assert not offending, sorted(offending)
