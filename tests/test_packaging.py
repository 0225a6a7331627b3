"""A plain ``pip install .`` (no extras) runs every command: every third-party module the ``fhir_server``
package imports, at the top of a module or inside a function, comes from a distribution declared in
``[project].dependencies`` of pyproject.toml, not from the test extra or from another package's dependencies."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fhir_server"


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them (``fhir.resources`` == ``fhir-resources``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_top_level_modules(package: Path) -> dict[str, set[str]]:
    """Top-level module name -> the files importing it (absolute imports only: relative ones stay inside)."""
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def declared(group: list[str]) -> set[str]:
    return {normalise(re.match(r"[A-Za-z0-9._-]+", requirement).group()) for requirement in group}  # type: ignore[union-attr]


def runtime_dependencies() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return declared(project["dependencies"])


def undeclared_imports(imports: dict[str, set[str]], runtime: set[str]) -> list[str]:
    """One line per third-party module whose distribution is not a runtime dependency."""
    distributions = importlib.metadata.packages_distributions()
    problems = []
    for module, files in sorted(imports.items()):
        if module in sys.stdlib_module_names or module == PACKAGE.name:
            continue
        owners = {normalise(d) for d in distributions.get(module, [])}
        if not owners & runtime:
            where = ", ".join(sorted(files))
            problems.append(f"{module} (distribution {sorted(owners) or 'not installed'}) imported by {where}")
    return problems


def test_every_module_the_package_imports_is_a_runtime_dependency() -> None:
    imports = imported_top_level_modules(PACKAGE)
    assert {"fastapi", "pymongo", "httpx"} <= imports.keys()  # the walk sees top-level and in-function imports
    assert undeclared_imports(imports, runtime_dependencies()) == []


def test_an_import_whose_distribution_is_not_declared_is_reported() -> None:
    """The check itself: httpx (used by ``import-csv``) counts as missing when it is not a runtime dependency
    (as when it was only in the test extra); standard-library modules and the package itself never do."""
    imports = {"httpx": {"fhir_server/legacy_import.py"}, "json": {"x.py"}, "fhir_server": {"x.py"}}
    assert undeclared_imports(imports, runtime_dependencies() - {"httpx"}) == [
        "httpx (distribution ['httpx']) imported by fhir_server/legacy_import.py"]
