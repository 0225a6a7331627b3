"""Validation benchmark (engineering notes: "keep a validation benchmark and watch it"), in CPU time.

``python -m fhir_server.validation.bench [examples_dir]`` measures, on one core:
* the wire-format checks on the official R4 examples (µs per resource);
* the full write-path validation of a registry submission (wire checks + rule table + profiles), without and
  with a reference resolver (resources/s).
The registry resources are those of ``tests/validation/registry_data.py``.
"""

from __future__ import annotations

import decimal
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fhir_server.validation.conformance import ConformanceSnapshot
from fhir_server.validation.primitives import check_primitive_types
from fhir_server.validation.profile import ProfileValidator
from fhir_server.validation.rules import RULES_FILE, load_rules, profiles_required_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = Path("/work/shared/fhir-r4-examples")


def _per_item(fn: Callable[[], Any], items: int, seconds: float = 1.0) -> float:
    """Median seconds per item over a few timed rounds."""
    fn()
    rounds = []
    for _ in range(5):
        n, start = 0, time.process_time()
        while time.process_time() - start < seconds / 5:
            fn()
            n += 1
        rounds.append((time.process_time() - start) / (n * items))
    return sorted(rounds)[2]


def main(examples: Path = EXAMPLES) -> None:
    docs = [json.loads(p.read_text(), parse_float=decimal.Decimal) for p in sorted(examples.glob("*.json"))]
    if docs:
        per = _per_item(lambda: [check_primitive_types(d) for d in docs], len(docs))
        print(f"wire-format checks, {len(docs)} official examples: {per * 1e6:.1f} us/resource")

    sys.path.insert(0, str(ROOT))
    from tests.validation.registry_data import all_resources, store

    conformance = ConformanceSnapshot.from_package_dir(str(ROOT / "profiles"))
    validator = ProfileValidator(conformance)
    rules = load_rules(RULES_FILE)
    resources = list(all_resources().values())
    stored = store()
    small = [check_primitive_types(r) for r in resources]
    assert not any(small), small

    def write_path(resolve: Callable[[str], dict[str, Any] | None] | None) -> Callable[[], None]:
        def run() -> None:
            for r in resources:
                check_primitive_types(r)
                for profile in profiles_required_for(r, rules):
                    validator.validate(r, profile, resolve)
        return run

    per = _per_item(lambda: [check_primitive_types(r) for r in resources], len(resources))
    print(f"wire-format checks, registry resources: {per * 1e6:.1f} us/resource")
    for label, resolve in (("no resolver", None), ("with resolver", stored.get)):
        per = _per_item(write_path(resolve), len(resources))
        print(f"write-path validation ({label}): {1 / per:,.0f} resources/s ({per * 1e6:.0f} us/resource)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else EXAMPLES)
