"""The README's quick start and ``make smoke`` (scripts/smoke.py) agree: the smoke runs exactly the commands of
the README's quick-start block, and each of them is one the smoke can point at its own server."""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path
from types import ModuleType

from fhir_server.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def _smoke() -> ModuleType:
    spec = importlib.util.spec_from_file_location("smoke", ROOT / "scripts" / "smoke.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


smoke = _smoke()
BLOCK = smoke.quick_start_block((ROOT / "README.md").read_text())
STEPS = smoke.steps(BLOCK)


def test_the_quick_start_submits_the_example_reads_it_back_imports_the_csv_and_shows_the_report() -> None:
    commands = [step.command for step in STEPS]
    assert any("--data-binary @examples/patient-bundle.json" in c for c in commands)
    assert any("Patient?identifier=" in c and "FR-POI-0042" in c for c in commands)
    assert any(c.startswith(".venv/bin/fhir-server import-csv examples/legacy-registry.csv") for c in commands)
    assert any("$registry-report" in c for c in commands)
    assert any("http://127.0.0.1:8080/report" in c for c in commands)  # the page (with a token)


def test_the_quick_start_gets_a_token_and_sends_it_with_every_request_but_metadata() -> None:
    """SMART Backend Services (README, Authentication): a token from the CLI, then ``Authorization: Bearer``."""
    assert STEPS[1].command == "TOKEN=$(.venv/bin/fhir-server token --url http://127.0.0.1:8080/fhir)"
    for step in STEPS[2:]:
        if step.command.startswith("curl"):
            assert '-H "Authorization: Bearer $TOKEN"' in step.command, step.command


def test_every_command_talks_to_the_server_the_smoke_starts() -> None:
    """Every address in the block is the one ``make run`` serves (the smoke replaces it with its own port), and
    the command line tool is the one of the clone's .venv (the smoke's plain install)."""
    defaults = {name: field.default for name, field in Settings.model_fields.items()}  # not the environment's
    assert f"{defaults['host']}:{defaults['port']}" == smoke.README_ADDRESS
    for step in STEPS:
        addresses = set(re.findall(r"(?:^|[\s'\"])https?://([^/\s'\"]+)", step.command))  # not in a parameter
        assert addresses == {smoke.README_ADDRESS}, step.command
        assert smoke.README_ADDRESS not in smoke.localised(step.command, 1234)
        first = shlex.split(step.command)[0].removeprefix("TOKEN=$(")
        assert first in ("curl", ".venv/bin/fhir-server"), step.command


def test_every_file_the_quick_start_names_exists() -> None:
    named = [word.lstrip("@") for step in STEPS for word in shlex.split(step.command)
             if word.lstrip("@").startswith("examples/")]
    assert named and all((ROOT / name).is_file() for name in named)


def test_only_the_import_expects_a_failure_status() -> None:
    """The example CSV has one bad row on purpose (the per-row error report): import-csv exits 1 and says so."""
    for step in STEPS:
        importing = " import-csv " in step.command
        assert step.expected_status == (1 if importing else 0), step.command
        assert step.expected_output or not importing


def test_steps_join_continuation_lines_and_read_expectations() -> None:
    block = ["# a comment", "curl -s http://127.0.0.1:8080/fhir \\", "     -d '{}'", "# prints: ok",
             "", "tool run", "# exits 2 and prints: 1  failed", "last"]
    assert [(s.command, s.expected_output, s.expected_status) for s in smoke.steps(block)] == [
        ("curl -s http://127.0.0.1:8080/fhir -d '{}'", "ok", 0), ("tool run", "1  failed", 2), ("last", None, 0)]


def test_ci_runs_the_smoke_after_the_tests() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci.index("make smoke") > ci.index("make test")
    assert "\nsmoke:\n\t$(PY) scripts/smoke.py\n" in (ROOT / "Makefile").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    """Each field of ``Settings`` is documented as its environment variable in the README's table (first column),
    and the table names no variable that the server does not read (a few, like ``FHIR_MONGOD_BIN``, are read
    where they are used rather than through ``Settings``)."""
    section = (ROOT / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `FHIR_")]
    documented = {name for row in rows for name in re.findall(r"`(FHIR_[A-Z0-9_]+)`", row.split(" | ")[0])}
    expected = {f"FHIR_{name.upper()}" for name in Settings.model_fields}
    assert expected - documented == set(), "settings missing from the README's table"
    source = "\n".join(path.read_text() for path in (ROOT / "fhir_server").rglob("*.py"))
    assert {name for name in documented - expected if f'"{name}"' not in source} == set(), "rows naming no setting"
