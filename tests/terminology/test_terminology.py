"""Terminology services over the registry's CodeSystems, ValueSets and ConceptMaps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhir_server.terminology import ExpansionError, Terminology
from fhir_server.terminology.core import core_terminology

ROOT = Path(__file__).resolve().parents[2]
B = "https://cml-registry.eu/fhir"
REASON = f"{B}/CodeSystem/ifp-registration-reason"
ATC, SCT = "http://www.whocc.no/atc", "http://snomed.info/sct"
FAILURES = {"no-chr-3m", "no-cyr-6m", "no-mcyr-12m", "hematologic-relapse", "cytogenetic-relapse",
            "progression-ap-bc"}


@pytest.fixture(scope="module")
def term() -> Terminology:
    files = sorted((ROOT / "profiles").glob("*.json"))
    return Terminology(json.loads(p.read_text()) for p in files if p.name != "rules.json")


def codes(expansion: dict[str, Any]) -> set[str]:
    return {c["code"] for c in expansion["expansion"].get("contains", [])}


def test_descendants_of_failure_are_the_six_subcategories(term: Terminology) -> None:
    assert term.descendants(REASON, "failure") == FAILURES


def test_descendants_of_a_leaf_are_empty(term: Terminology) -> None:
    assert term.descendants(REASON, "toxicity") == frozenset()


def test_descendants_of_unknown_system_are_empty(term: Terminology) -> None:
    assert term.descendants("http://example.org/none", "x") == frozenset()


def test_ancestors(term: Terminology) -> None:
    assert term.ancestors(REASON, "no-chr-3m") == {"failure"}
    assert term.ancestors(REASON, "failure") == frozenset()


def test_subsumes(term: Terminology) -> None:
    assert term.subsumes(REASON, "failure", "no-cyr-6m") == "subsumes"
    assert term.subsumes(REASON, "no-cyr-6m", "failure") == "subsumed-by"
    assert term.subsumes(REASON, "toxicity", "toxicity") == "equivalent"
    assert term.subsumes(REASON, "toxicity", "no-cyr-6m") == "not-subsumed"


def test_subsumes_unknown_code_raises(term: Terminology) -> None:
    with pytest.raises(KeyError):
        term.subsumes(REASON, "failure", "nope")


def test_lookup(term: Terminology) -> None:
    found = term.lookup(REASON, "failure")
    assert found is not None
    assert found.display == "Lack of efficacy (failure)"
    assert found.abstract is True
    assert set(found.children) == FAILURES
    assert term.lookup(REASON, "nope") is None


def test_hierarchy_from_parent_property() -> None:
    cs = {"resourceType": "CodeSystem", "url": "urn:cs", "content": "complete", "concept": [
        {"code": "a"}, {"code": "b", "property": [{"code": "parent", "valueCode": "a"}]},
        {"code": "c", "property": [{"code": "parent", "valueCode": "b"}]}]}
    term = Terminology([cs])
    assert term.descendants("urn:cs", "a") == {"b", "c"}
    assert term.ancestors("urn:cs", "c") == {"a", "b"}


def test_hierarchy_cycle_does_not_hang() -> None:
    cs = {"resourceType": "CodeSystem", "url": "urn:cs", "concept": [
        {"code": "a", "property": [{"code": "parent", "valueCode": "b"}]},
        {"code": "b", "property": [{"code": "parent", "valueCode": "a"}]}]}
    assert Terminology([cs]).descendants("urn:cs", "a") == {"b"}


def test_expand_with_descendent_of_filter_and_concept(term: Terminology) -> None:
    expansion = term.expand(f"{B}/ValueSet/ifp-registration-reasons")
    assert codes(expansion) == FAILURES | {"toxicity"}
    assert expansion["expansion"]["total"] == 7


def test_expand_whole_system(term: Terminology) -> None:
    assert codes(term.expand(f"{B}/ValueSet/ifp-decision")) >= {"dasatinib", "allo-sct", "other"}


def test_expand_text_filter(term: Terminology) -> None:
    expansion = term.expand(f"{B}/ValueSet/ifp-registration-reasons", filter="relapse")
    assert codes(expansion) == {"hematologic-relapse", "cytogenetic-relapse"}


def test_expand_paging(term: Terminology) -> None:
    page = term.expand(f"{B}/ValueSet/ifp-decision", count=3, offset=2)
    assert page["expansion"]["total"] == 11
    assert page["expansion"]["offset"] == 2
    assert len(page["expansion"]["contains"]) == 3


def test_expand_value_set_of_value_sets(term: Terminology) -> None:
    assert codes(term.expand(f"{B}/ValueSet/ifp-response-values")) == {
        "chr", "no-chr", "ccyr", "pcyr", "minor-cyr", "minimal-cyr", "no-cyr"}


def test_expand_external_concept_list(term: Terminology) -> None:
    expansion = term.expand(f"{B}/ValueSet/stop-reasons")
    assert {(c["system"], c["code"]) for c in expansion["expansion"]["contains"]} == {
        (SCT, "266721009"), (SCT, "407563006")}


def test_expand_whole_external_system_is_refused() -> None:
    vs = {"resourceType": "ValueSet", "url": "urn:vs", "compose": {"include": [{"system": "http://loinc.org"}]}}
    with pytest.raises(ExpansionError) as e:
        Terminology([vs]).expand("urn:vs")
    assert e.value.code == "too-costly"


def test_expand_unknown_value_set(term: Terminology) -> None:
    with pytest.raises(ExpansionError):
        term.expand("urn:unknown")


def test_exclude_removes_codes() -> None:
    cs = {"resourceType": "CodeSystem", "url": "urn:cs", "content": "complete",
          "concept": [{"code": "a"}, {"code": "b"}]}
    vs = {"resourceType": "ValueSet", "url": "urn:vs", "compose": {
        "include": [{"system": "urn:cs"}], "exclude": [{"system": "urn:cs", "concept": [{"code": "a"}]}]}}
    assert codes(Terminology([cs, vs]).expand("urn:vs")) == {"b"}


def test_is_a_filter_includes_the_code_itself(term: Terminology) -> None:
    vs = {"resourceType": "ValueSet", "url": "urn:vs", "compose": {"include": [
        {"system": REASON, "filter": [{"property": "concept", "op": "is-a", "value": "failure"}]}]}}
    term.add(vs)
    assert codes(term.expand("urn:vs")) == FAILURES | {"failure"}


def test_validate_code(term: Terminology) -> None:
    vs = f"{B}/ValueSet/ifp-registration-reasons"
    assert term.validate_code(vs, REASON, "toxicity").result is True
    assert term.validate_code(vs, REASON, "failure").result is False
    assert term.validate_code(vs, None, "no-chr-3m").result is True


def test_validate_code_reports_display_mismatch(term: Terminology) -> None:
    result = term.validate_code(f"{B}/ValueSet/stop-reasons", SCT, "266721009", display="Something else")
    assert result.result is True and result.message and "differs" in result.message


def test_validate_code_in_open_system_is_unchecked() -> None:
    vs = {"resourceType": "ValueSet", "url": "urn:vs", "compose": {"include": [{"system": "http://loinc.org"}]}}
    result = Terminology([vs]).validate_code("urn:vs", "http://loinc.org", "777-3")
    assert result.result is True and result.checked is False


def test_validate_in_system(term: Terminology) -> None:
    assert term.validate_in_system(REASON, "no-cyr-6m").result is True
    assert term.validate_in_system(REASON, "nope").result is False


def test_translate_pre_2022_atc(term: Terminology) -> None:
    matches = term.translate(ATC, "L01XE01")
    assert [(m.code, m.equivalence) for m in matches] == [("L01EA01", "equivalent")]


def test_translate_reverse(term: Terminology) -> None:
    assert [m.code for m in term.translate(ATC, "L01EA02", reverse=True)] == ["L01XE06"]


def test_translate_disease_phase_blast_is_unmatched(term: Terminology) -> None:
    phase = f"{B}/CodeSystem/ifp-disease-phase"
    assert [m.code for m in term.translate(phase, "chronic", target_system=SCT)] == ["278177007"]
    blast = term.translate(phase, "blast")
    assert len(blast) == 1 and not blast[0].usable


def test_versions_latest_wins_and_pinning_works() -> None:
    v1 = {"resourceType": "CodeSystem", "url": "urn:cs", "version": "1.9", "concept": [{"code": "a"}]}
    v2 = {"resourceType": "CodeSystem", "url": "urn:cs", "version": "1.10", "concept": [{"code": "b"}]}
    term = Terminology([v2, v1])
    assert term.lookup("urn:cs", "b") is not None
    assert term.lookup("urn:cs|1.9", "a") is not None


def test_case_insensitive_system() -> None:
    cs = {"resourceType": "CodeSystem", "url": "urn:cs", "caseSensitive": False, "concept": [{"code": "Abc"}]}
    assert Terminology([cs]).lookup("urn:cs", "aBC") is not None


GENDER, GENDER_VS = "http://hl7.org/fhir/administrative-gender", "http://hl7.org/fhir/ValueSet/administrative-gender"


def test_r4_code_systems_and_value_sets_answer_by_url_and_by_r4_version() -> None:
    term = Terminology([], core=core_terminology())
    assert codes(term.expand(GENDER_VS)) == {"male", "female", "other", "unknown"}
    assert codes(term.expand(f"{GENDER_VS}|4.0.1")) == {"male", "female", "other", "unknown"}
    with pytest.raises(ExpansionError):
        term.expand(f"{GENDER_VS}|9.9.9")
    assert term.lookup(f"{GENDER}|4.0.1", "other") is not None


def test_a_published_resource_of_an_r4_url_comes_before_r4s_own() -> None:
    own = {"resourceType": "ValueSet", "url": GENDER_VS, "version": "local", "status": "active",
           "compose": {"include": [{"system": GENDER, "concept": [{"code": "female"}]}]}}
    term = Terminology([own], core=core_terminology())
    assert codes(term.expand(GENDER_VS)) == {"female"}
    assert codes(term.expand(f"{GENDER_VS}|4.0.1")) == {"male", "female", "other", "unknown"}


def test_without_the_core_r4_code_systems_are_open() -> None:
    value_set = {"resourceType": "ValueSet", "url": "urn:vs", "compose": {"include": [{"system": GENDER}]}}
    assert Terminology([value_set]).membership("urn:vs").open_systems == {GENDER}
    assert Terminology([value_set], core=core_terminology()).membership("urn:vs").contains(GENDER, "nope") is False
