"""Validation benchmark (issue 4, item 9): resources/s validated against the registry's profiles, one core.

The mix is realistic: every resource of ``tests.synthetic.registry_cohort(N)`` (centers, patients,
diagnoses, imatinib periods, baseline labs, risk scores, responses, registrations, decisions, second-line
therapies, transplants; about 14 per patient), with the Bundle's ``urn:uuid`` references rewritten to
``Type/id`` as a transaction does, and resolved from a dictionary as the server resolves them from the unit of
work (so ``targetProfile`` checks really validate the referenced resource too).

Measured path = what ``enforcement.validation_issues`` runs on a write, without the database:
``validation.primitives.check_primitive_types`` (wire format), R4's own invariants
(``validation.core_invariants``, also timed alone), the rule table
(``validation.rules.profiles_required_for``) plus the profiles claimed in ``meta.profile``, and
``ProfileValidator.validate`` for each, plus the risk-score check of ``interactions.risk`` (baseline inputs
taken from the same patient's resources). A first figure is the wire-format check alone on HL7's 138 official
R4 examples (``tests/data/fhir-r4-examples``: many types and shapes, not only the registry's). A last figure
adds the ``fhir.resources`` R4B model check that ``resources.check_structure`` ran on a write until issue #14
(the engineering notes put it at 140-210 us/resource): what dropping it saved.

CPU time of this process (``time.process_time``), median of 5 rounds; pin it to one core to be sure::

    taskset -c 0 .venv/bin/python bench/validate.py --patients 200
"""

from __future__ import annotations

import argparse
import copy
import decimal
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fhir.resources.R4B import get_fhir_model_class

from fhir_server.interactions.risk import baseline_of, disagreement, score_name
from fhir_server.json_types import Json
from fhir_server.validation.conformance import ConformanceSnapshot
from fhir_server.validation.core_invariants import core_invariant_issues
from fhir_server.validation.primitives import check_primitive_types
from fhir_server.validation.profile import ProfileValidator
from fhir_server.validation.rules import load_rules, profiles_required_for
from tests.synthetic import registry_cohort

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "tests" / "data" / "fhir-r4-examples"


def _rewrite(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: (ids.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, ids))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, ids) for v in value]
    return value


def cohort_resources(patients: int) -> tuple[list[Json], dict[str, Json], dict[str, list[Json]]]:
    """The cohort's resources as a transaction would store them, by reference, and per patient."""
    resources: list[Json] = []
    by_patient: dict[str, list[Json]] = {}
    for n, (bundle, _facts) in enumerate(registry_cohort(patients)):
        ids = {e["fullUrl"]: f"{e['resource']['resourceType']}/b{n}-{i}" for i, e in enumerate(bundle["entry"])}
        for i, entry in enumerate(bundle["entry"]):
            resource = _rewrite(copy.deepcopy(entry["resource"]), ids)
            resource["id"] = f"b{n}-{i}"
            resources.append(resource)
            subject = (resource.get("subject") or {}).get("reference")
            if subject:
                by_patient.setdefault(subject, []).append(resource)
    stored = {f"{r['resourceType']}/{r['id']}": r for r in resources}
    return resources, stored, by_patient


def official_examples() -> list[Json]:
    """HL7's official R4 examples of the supported types, parsed as the server parses a body (Decimal)."""
    files = sorted(EXAMPLES.glob("*.json"))
    if not files:
        raise SystemExit(f"no official examples in {EXAMPLES}")
    return [json.loads(p.read_text(), parse_float=decimal.Decimal) for p in files]


def wire_checks(resources: list[Json]) -> Callable[[], int]:
    """One pass of the wire-format checks alone; returns the number of errors found (an official example may
    carry a warning: Organization-2.16.840.1.113883.19.5's urn:ietf:rfc:3986 identifier is no URI)."""
    def run() -> int:
        return sum(1 for r in resources for i in check_primitive_types(r) if i.severity == "error")
    return run


def r4_invariants(resources: list[Json]) -> Callable[[], int]:
    """One pass of R4's own invariants alone (``validation.core_invariants``); returns the number of errors."""
    def run() -> int:
        return sum(1 for r in resources for i in core_invariant_issues(r) if i.severity == "error")
    return run


def write_path(resources: list[Json], stored: dict[str, Json], by_patient: dict[str, list[Json]],
               validator: ProfileValidator, rules: list[Json], models: bool) -> Callable[[], int]:
    """One pass of the write-path validation over every resource; returns the number of errors found."""
    def run() -> int:
        errors = 0
        for r in resources:
            if models:
                get_fhir_model_class(r["resourceType"]).model_validate(r)
            issues = check_primitive_types(r) + core_invariant_issues(r)
            profiles = list(profiles_required_for(r, rules))
            for claimed in (r.get("meta") or {}).get("profile") or []:
                if claimed not in profiles:
                    profiles.append(claimed)
            for profile in profiles:
                issues += validator.validate(r, profile, stored.get)
            name = score_name(r)
            if name is not None:
                subject = r["subject"]["reference"]
                mine = by_patient.get(subject, [])
                baseline = baseline_of(stored[subject], [x for x in mine if x["resourceType"] == "Condition"],
                                       [x for x in mine if x["resourceType"] == "Observation"])
                computed = baseline.scores().get(name)
                issues += disagreement(r, computed) if computed else []
            errors += sum(1 for i in issues if i.severity in ("error", "fatal"))
        return errors
    return run


def per_item(fn: Callable[[], int], items: int, rounds: int = 5) -> float:
    """Median CPU seconds per item over ``rounds`` passes (after one warm-up pass)."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.process_time()
        fn()
        times.append((time.process_time() - start) / items)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=200)
    args = parser.parse_args()
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    examples = official_examples()
    assert wire_checks(examples)() == 0, "the official examples should pass the wire-format checks"
    per = per_item(wire_checks(examples), len(examples))
    print(f"wire-format checks, {len(examples)} official R4 examples: {per * 1e6:.1f} us/resource (CPU time)")
    assert r4_invariants(examples)() == 0, "the official examples should break no R4 invariant"
    per = per_item(r4_invariants(examples), len(examples))
    print(f"R4 invariants, {len(examples)} official R4 examples: {per * 1e6:.1f} us/resource (CPU time)")
    resources, stored, by_patient = cohort_resources(args.patients)
    validator = ProfileValidator(ConformanceSnapshot.from_package_dir(str(ROOT / "profiles")))
    rules = load_rules(ROOT / "profiles" / "rules.json")
    kinds: dict[str, int] = {}
    for r in resources:
        kinds[r["resourceType"]] = kinds.get(r["resourceType"], 0) + 1
    print(f"{len(resources)} resources of {args.patients} synthetic registry patients "
          f"({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}); CPUs allowed: {affinity}")
    errors = write_path(resources, stored, by_patient, validator, rules, False)()
    assert errors == 0, f"the synthetic cohort should be valid, found {errors} errors"
    per = per_item(r4_invariants(resources), len(resources))
    print(f"R4 invariants alone: {per * 1e6:.1f} us/resource (CPU time)")
    for label, models in (("primitives + R4 invariants + rule table + profiles + risk check", False),
                          ("same + fhir.resources R4B model check (before #14)", True)):
        per = per_item(write_path(resources, stored, by_patient, validator, rules, models), len(resources))
        print(f"{label}: {1 / per:,.0f} resources/s ({per * 1e6:.0f} us/resource, CPU time, one core)")


if __name__ == "__main__":
    main()
