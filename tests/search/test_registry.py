"""Registry behaviour: R4 definitions per type, runtime SearchParameters, compiled expressions, indexes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fhir_server.errors import InvalidRequest
from fhir_server.resources import SERVED_TYPES
from fhir_server.search.expressions import compile_expression, evaluate, split_union
from fhir_server.search.registry import R4_UNEVALUABLE, SearchParameterRegistry

SUPPORTED = (
    "Patient",
    "Organization",
    "Condition",
    "MedicationStatement",
    "Observation",
    "Procedure",
    "Group",
    "StructureDefinition",
    "CodeSystem",
    "ValueSet",
    "ConceptMap",
    "SearchParameter",
    "ImplementationGuide",
)


@pytest.fixture(scope="module")
def registry() -> SearchParameterRegistry:
    return SearchParameterRegistry.load_default()


def test_for_type_includes_resource_level_parameters(registry: SearchParameterRegistry) -> None:
    params = registry.for_type("Patient")
    for code in (
        "_id",
        "_lastUpdated",
        "_profile",
        "_tag",
        "_security",
        "_source",
        "identifier",
        "birthdate",
    ):
        assert code in params
    assert params["identifier"].type == "token"


def test_every_supported_type_has_its_own_parameters(registry: SearchParameterRegistry) -> None:
    for resource_type in SUPPORTED:
        own = [p for p in registry.for_type(resource_type).values() if resource_type in p.base]
        assert own, resource_type


def test_every_expression_of_a_supported_type_compiles(registry: SearchParameterRegistry) -> None:
    for resource_type in SUPPORTED:
        for param in registry.for_type(resource_type).values():
            if param.indexed:
                assert registry.branches(param, resource_type), (resource_type, param.code)


def test_r4_unevaluable_is_what_compiling_every_r4_definition_for_every_type_finds(
        registry: SearchParameterRegistry) -> None:
    compiled = SearchParameterRegistry(registry.all(), compile_now=False)  # knows no verdicts: compiles
    found = {(p.url, resource_type) for resource_type in SERVED_TYPES
             for p in compiled.for_type(resource_type).values()
             if p.indexed and not compiled.evaluable(p, resource_type)}
    assert found == R4_UNEVALUABLE


def test_a_replaced_r4_definition_is_judged_by_compiling_it() -> None:
    local = SearchParameterRegistry.load_default()
    birthdate = local.get("Patient", "birthdate")
    assert birthdate is not None and local.evaluable(birthdate, "Patient")
    replaced = local.add_or_replace({"resourceType": "SearchParameter", "url": birthdate.url, "code": "birthdate",
                                     "base": ["Patient", "Person"], "type": "date",
                                     "expression": "Person.birthDate"})
    assert not local.evaluable(replaced, "Patient")
    assert local.evaluable(replaced, "Person")


def test_multi_type_expression_keeps_only_the_branch_of_the_type() -> None:
    branches = compile_expression("Condition.code | Observation.code | Procedure.code", "Observation")
    assert [b.source for b in branches] == ["Observation.code"]


def test_split_union_ignores_bars_inside_parentheses_and_strings() -> None:
    assert split_union("(a | b) | c.where(x = '|')") == ["(a | b)", "c.where(x = '|')"]


def test_as_operator_on_a_collection_works_like_of_type() -> None:
    # fhirpathpy raises on `(X as T)` when X has several items; the registry rewrites it to ofType.
    branches = compile_expression("(Observation.component.value as Quantity)", "Observation")
    obs = {
        "resourceType": "Observation",
        "component": [
            {"valueQuantity": {"value": Decimal("1.5")}},
            {"valueString": "x"},
            {"valueQuantity": {"value": 2}},
        ],
    }
    assert [v for v, _ in evaluate(branches, obs)] == [{"value": Decimal("1.5")}, {"value": 2}]


def test_as_operator_on_a_choice_element_selects_the_type() -> None:
    branches = compile_expression("(Observation.value as CodeableConcept).text", "Observation")
    obs = {"resourceType": "Observation", "valueCodeableConcept": {"text": "chronic"}}
    assert [v for v, _ in evaluate(branches, obs)] == ["chronic"]
    assert evaluate(branches, {"resourceType": "Observation", "valueString": "x"}) == []


def test_resolve_is_type_becomes_a_reference_type_restriction() -> None:
    branches = compile_expression("Observation.subject.where(resolve() is Patient)", "Observation")
    assert branches[0].reference_type == "Patient"


def test_complex_expression_falls_back_to_fhirpathpy() -> None:
    branches = compile_expression("Patient.deceased.exists() and Patient.deceased != false", "Patient")
    assert [v for v, _ in evaluate(branches, {"resourceType": "Patient", "deceasedBoolean": True})] == [True]


def test_add_or_replace_registers_a_runtime_search_parameter(registry: SearchParameterRegistry) -> None:
    local = SearchParameterRegistry.load_default()
    local.add_or_replace(
        {
            "resourceType": "SearchParameter",
            "url": "https://x/SearchParameter/center",
            "code": "center",
            "base": ["Patient"],
            "type": "reference",
            "expression": "Patient.managingOrganization",
            "target": ["Organization"],
        }
    )
    assert local.get("Patient", "center") is not None
    assert local.get("Observation", "center") is None
    assert local.remove("https://x/SearchParameter/center")
    assert local.get("Patient", "center") is None
    assert registry.get("Patient", "center") is None


def test_add_or_replace_rejects_a_search_parameter_without_code() -> None:
    with pytest.raises(InvalidRequest):
        SearchParameterRegistry.load_default().add_or_replace(
            {"resourceType": "SearchParameter", "url": "u", "base": ["Patient"], "type": "token"}
        )


def test_add_or_replace_rejects_an_expression_that_does_not_compile() -> None:
    with pytest.raises(InvalidRequest):
        SearchParameterRegistry.load_default().add_or_replace(
            {
                "resourceType": "SearchParameter",
                "url": "u",
                "code": "x",
                "base": ["Patient"],
                "type": "token",
                "expression": "Patient.name.where(",
            }
        )


def test_index_specs_stay_few_and_never_combine_two_arrays(registry: SearchParameterRegistry) -> None:
    for resource_type in SUPPORTED:
        specs = registry.index_specs(resource_type)
        assert [("$**", 1)] in specs
        assert "sp._sort" in registry.index_options([("$**", 1)])["wildcardProjection"]
        assert len(specs) <= 10  # Observation: 10 with the `_has` stream's (value-concept, subject order)
        for spec in specs:
            arrays = {f.split(".")[1] for f, _ in spec if f.startswith("sp.")} - {"_sort"}
            assert len(arrays) <= 1, spec
    assert [("sp.identifier.c", 1), ("sp.identifier.s", 1), ("_id", 1)] in registry.index_specs("Patient")
    assert [("sp.subject.r", 1), ("_id", 1)] in registry.index_specs("Observation")
    assert [("sp.code.c", 1), ("sp.code.s", 1), ("sp._sort.date.d", 1), ("sp._sort.date.a", 1),
            ("_id", 1)] in registry.index_specs("Observation")
    assert [("sp.value-concept.c", 1), ("sp.value-concept.s", 1), ("sp._sort.subject.a", 1),
            ("sp._sort.subject.d", 1)] in registry.index_specs("Observation")


def test_compartment_params_come_from_the_patient_compartment(registry: SearchParameterRegistry) -> None:
    assert registry.compartment_params("Patient", "Observation") == ["subject", "performer"]
    assert registry.compartment_params("Patient", "Organization") == []
