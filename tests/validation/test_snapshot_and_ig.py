"""Snapshot generation, the rule table and the IG package."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from fhir_server.validation.conformance import ConformanceSnapshot
from fhir_server.validation.core import core_definitions
from fhir_server.validation.rules import load_rules, profiles_required_for
from fhir_server.validation.snapshot import SnapshotError, generate_snapshot
from tests.validation.registry_data import all_resources, profile_url, resource

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "profiles"
CORE = "http://hl7.org/fhir/StructureDefinition/"


def ids(sd: dict[str, Any]) -> list[str]:
    return [e["id"] for e in sd["snapshot"]["element"]]


def profile(diff: list[dict[str, Any]], rtype: str = "Observation") -> dict[str, Any]:
    return {"resourceType": "StructureDefinition", "url": "https://example.org/sd", "type": rtype,
            "baseDefinition": CORE + rtype, "derivation": "constraint", "differential": {"element": diff}}


def test_snapshot_unfolds_datatype_children() -> None:
    sd = generate_snapshot(profile([{"id": "Observation.subject.reference", "path": "Observation.subject.reference",
                                     "min": 1}]), core_definitions().get)
    assert "Observation.subject.reference" in ids(sd)
    element = sd["snapshot"]["element"][ids(sd).index("Observation.subject.reference")]
    assert element["min"] == 1 and element["path"] == "Observation.subject.reference"


def test_snapshot_places_slices_after_the_sliced_element() -> None:
    diff: list[dict[str, Any]] = [{"id": "Observation.component", "path": "Observation.component",
             "slicing": {"discriminator": [{"type": "pattern", "path": "code"}], "rules": "open"}},
            {"id": "Observation.component:a", "path": "Observation.component", "sliceName": "a", "min": 1},
            {"id": "Observation.component:a.code", "path": "Observation.component.code",
             "patternCodeableConcept": {"text": "a"}}]
    sd = generate_snapshot(profile(diff), core_definitions().get)
    order = ids(sd)
    assert order.index("Observation.component:a") > order.index("Observation.component.referenceRange")
    assert order.index("Observation.component:a.code") == order.index("Observation.component:a") + 4
    assert sd["snapshot"]["element"][order.index("Observation.component:a.code")]["path"] == (
        "Observation.component.code")


@pytest.mark.parametrize(("slice_min", "expected"), [(None, 0), (1, 1)])
def test_a_slice_is_optional_unless_its_differential_says_otherwise(slice_min: int | None, expected: int) -> None:
    """profiling.html#slice-cardinality: the sliced element's minimum counts its slices together (HL7's validator
    suite, sdoh-type-slice: effective[x] 1..1, sliced by type, a dateTime is valid without the Period slice)."""
    diff: list[dict[str, Any]] = [
        {"id": "Observation.effective[x]", "path": "Observation.effective[x]", "min": 1,
         "slicing": {"discriminator": [{"type": "type", "path": "$this"}], "rules": "open"}},
        {"id": "Observation.effective[x]:effectivePeriod", "path": "Observation.effective[x]",
         "sliceName": "effectivePeriod", "type": [{"code": "Period"}],
         **({} if slice_min is None else {"min": slice_min})}]
    sd = generate_snapshot(profile(diff), core_definitions().get)
    elements = sd["snapshot"]["element"]
    assert elements[ids(sd).index("Observation.effective[x]")]["min"] == 1
    assert elements[ids(sd).index("Observation.effective[x]:effectivePeriod")]["min"] == expected


def test_snapshot_adds_constraints_to_the_base() -> None:
    diff = [{"id": "Observation", "path": "Observation",
             "constraint": [{"key": "x-1", "severity": "error", "human": "h", "expression": "true"}]}]
    root = generate_snapshot(profile(diff), core_definitions().get)["snapshot"]["element"][0]
    keys = [c["key"] for c in root["constraint"]]
    assert "dom-2" in keys and keys[-1] == "x-1"
    assert root["constraint"][-1]["source"] == "https://example.org/sd"


def test_snapshot_rejects_unknown_elements() -> None:
    with pytest.raises(SnapshotError):
        generate_snapshot(profile([{"id": "Observation.nope", "path": "Observation.nope"}]), core_definitions().get)


def test_snapshot_rejects_children_of_choice_with_many_types() -> None:
    with pytest.raises(SnapshotError):
        generate_snapshot(profile([{"id": "Observation.value[x].code", "path": "Observation.value[x].code"}]),
                          core_definitions().get)


def test_profiles_snapshots_are_up_to_date() -> None:
    result = subprocess.run([sys.executable, "scripts/build_ig.py", "--check"], cwd=ROOT, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_differential_only_profiles_get_a_snapshot() -> None:
    sd = json.loads((PROFILES / "StructureDefinition-ifp-patient.json").read_text())
    sd.pop("snapshot")
    conformance = ConformanceSnapshot([sd])
    built = conformance.structure_definition(sd["url"])
    assert built is not None and "Patient.identifier:pseudonym.system" in ids(built)


def test_ig_package_contents(tmp_path: Path) -> None:
    out = tmp_path / "package.tgz"
    subprocess.run([sys.executable, "scripts/build_ig.py", "--out", str(out)], cwd=ROOT, check=True,
                   capture_output=True)
    with tarfile.open(out) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("package/package.json"))  # type: ignore[arg-type]
    assert manifest["name"] == "eu.cml-registry.ifp"
    assert manifest["fhirVersions"] == ["4.0.1"]
    assert manifest["dependencies"] == {"hl7.fhir.r4.core": "4.0.1"}
    expected = {f"package/{p.name}" for p in PROFILES.glob("*.json") if p.name != "rules.json"}
    assert expected <= set(names)
    assert "package/ImplementationGuide-ifp.json" in names


def test_implementation_guide_lists_every_resource() -> None:
    ig = json.loads((PROFILES / "ImplementationGuide-ifp.json").read_text())
    listed = {e["reference"]["reference"] for e in ig["definition"]["resource"]}
    files = [json.loads(p.read_text()) for p in PROFILES.glob("*.json")
             if p.name not in ("rules.json", "ImplementationGuide-ifp.json")]
    assert listed == {f"{r['resourceType']}/{r['id']}" for r in files}


def test_every_contract_profile_exists() -> None:
    for pid in ("ifp-center", "ifp-patient", "ifp-cml-diagnosis", "ifp-imatinib", "ifp-registration",
                "ifp-baseline-lab", "ifp-response", "ifp-risk-score", "ifp-decision", "ifp-subsequent-therapy",
                "ifp-transplant", "prospective-study"):
        sd = json.loads((PROFILES / f"StructureDefinition-{pid}.json").read_text())
        assert sd["url"] == f"https://cml-registry.eu/fhir/StructureDefinition/{pid}"
        assert sd["differential"]["element"] and sd["snapshot"]["element"]


@pytest.mark.parametrize("name", sorted(all_resources()))
def test_rule_table_selects_the_contract_profile(name: str) -> None:
    assert profiles_required_for(resource(name), load_rules(PROFILES / "rules.json")) == [profile_url(name)]


def test_rule_table_selects_imatinib_by_pre_2022_code() -> None:
    r = resource("imatinib")
    r["medicationCodeableConcept"]["coding"][0]["code"] = "L01XE01"
    assert profiles_required_for(r, load_rules(PROFILES / "rules.json")) == [profile_url("imatinib")]


def test_rule_table_ignores_unrelated_resources() -> None:
    org = {"resourceType": "Organization", "name": "Lab"}
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "weight"}}
    assert profiles_required_for(org, load_rules(PROFILES / "rules.json")) == []
    assert profiles_required_for(obs, load_rules(PROFILES / "rules.json")) == []
