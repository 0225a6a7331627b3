"""The package's structure is a checked contract (``[tool.importlinter]`` in pyproject.toml): the layers
``api -> interactions/operations -> search, validation, terminology -> storage`` with the composition root
(``fhir_server.bootstrap``) above the modules it wires, no import cycle anywhere, pure domain packages, FastAPI only
in ``api/``, the MongoDB driver only in ``storage/``, no test code in the server package. Every import counts: at
the top of a module, inside a function or under ``TYPE_CHECKING``. The layers contract is exhaustive: a new
top-level module of ``fhir_server`` must be given a layer. ``make lint`` runs the same contracts."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
# `lint-imports` of the interpreter running the tests
LINT_IMPORTS = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]


@pytest.mark.parametrize("contract", [c["id"] for c in CONTRACTS])
def test_import_contract_is_kept(contract: str) -> None:
    result = subprocess.run([*LINT_IMPORTS, "--no-cache", "--no-logo", "--contract", contract], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

