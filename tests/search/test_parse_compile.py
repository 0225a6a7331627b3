"""Parse and compile: the shape of parsed queries and MongoDB filters (pure; semantics are in the golden
tables run against a real mongod by ``test_golden_mongo.py``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from bson.decimal128 import Decimal128

from fhir_server.errors import InvalidRequest
from fhir_server.search.compile import compile_search
from fhir_server.search.model import HasClause, TerminologyRequest
from fhir_server.search.param_types.uri import uri_prefixes
from fhir_server.search.parse import parse_search, split_unescaped
from fhir_server.search.registry import SearchParameterRegistry

B = "https://cml-registry.eu/fhir"
NOW = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def registry() -> SearchParameterRegistry:
    return SearchParameterRegistry.load_default()


def compiled(
    registry: SearchParameterRegistry, resource_type: str | None, query: list[tuple[str, str]], **kw: Any
) -> Any:
    parsed = parse_search(registry, resource_type, query, strict=True, now=NOW)
    return compile_search(parsed, registry=registry, **kw)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_token_system_and_code_match_on_the_same_entry(registry: SearchParameterRegistry) -> None:
    c = compiled(registry, "Patient", [("identifier", f"{B}/sid/patient|FR-POI-0042")])
    assert c.filter == {"sp.identifier": {"$elemMatch": {"s": f"{B}/sid/patient", "c": "FR-POI-0042"}}}
    assert c.sort == [("_id", 1)]
    assert not c.needs_joins


def test_token_code_alone_matches_any_system(registry: SearchParameterRegistry) -> None:
    assert compiled(registry, "Patient", [("gender", "male")]).filter == {"sp.gender.c": "male"}


def test_token_bar_code_matches_entries_without_system(registry: SearchParameterRegistry) -> None:
    c = compiled(registry, "Observation", [("code", "|x")])
    assert c.filter == {"sp.code": {"$elemMatch": {"s": None, "c": "x"}}}


def test_token_system_bar_matches_any_code_of_the_system(registry: SearchParameterRegistry) -> None:
    assert compiled(registry, "Observation", [("code", "http://loinc.org|")]).filter == {
        "sp.code.s": "http://loinc.org"
    }


def test_comma_is_or_and_repeated_parameter_is_and(registry: SearchParameterRegistry) -> None:
    c = compiled(registry, "Patient", [("gender", "male,female"), ("gender", "other")])
    assert c.filter == {
        "$and": [{"$or": [{"sp.gender.c": "male"}, {"sp.gender.c": "female"}]}, {"sp.gender.c": "other"}]
    }


def test_escaped_comma_is_part_of_the_value(registry: SearchParameterRegistry) -> None:
    assert split_unescaped(r"a\,b,c", ",") == [r"a\,b", "c"]
    c = compiled(registry, "Patient", [("identifier", r"a\,b")])
    assert c.filter == {"sp.identifier.c": "a,b"}


def test_token_not_excludes_matching_and_keeps_resources_without_the_element(
    registry: SearchParameterRegistry,
) -> None:
    assert compiled(registry, "Patient", [("gender:not", "male")]).filter == {"$nor": [{"sp.gender.c": "male"}]}


def test_token_text_is_a_normalized_starts_with(registry: SearchParameterRegistry) -> None:
    assert compiled(registry, "Observation", [("code:text", "BCR-Abl")]).filter == {
        "sp.code.t": {"$regex": "^bcr\\-abl"}
    }


def test_token_of_type(registry: SearchParameterRegistry) -> None:
    c = compiled(registry, "Patient", [("identifier:of-type", "urn:idtype|PSEUDO|FR-1")])
    assert c.filter == {
        "sp.identifier": {"$elemMatch": {"c": "FR-1", "ty": {"$elemMatch": {"s": "urn:idtype", "c": "PSEUDO"}}}}
    }


def test_token_below_needs_a_resolved_code_set(registry: SearchParameterRegistry) -> None:
    parsed = parse_search(registry, "Observation", [("value-concept:below", f"{B}/CodeSystem/r|failure")], strict=True)
    request = TerminologyRequest("below", system=f"{B}/CodeSystem/r", code="failure")
    assert parsed.terminology_requests() == [request]
    with pytest.raises(InvalidRequest):
        compile_search(parsed)
    c = compile_search(
        parsed, expansions={request: [(f"{B}/CodeSystem/r", "failure"), (f"{B}/CodeSystem/r", "no-chr-3m")]}
    )
    assert c.filter == {
        "sp.value-concept": {"$elemMatch": {"s": f"{B}/CodeSystem/r", "c": {"$in": ["failure", "no-chr-3m"]}}}
    }


def test_string_default_is_accent_and_case_insensitive_starts_with(registry: SearchParameterRegistry) -> None:
    assert compiled(registry, "Patient", [("family", "LÉV")]).filter == {"sp.family.n": {"$regex": "^lev"}}


def test_string_contains_and_exact(registry: SearchParameterRegistry) -> None:
    assert compiled(registry, "Patient", [("name:contains", "mar")]).filter == {"sp.name.n": {"$regex": "mar"}}
    assert compiled(registry, "Patient", [("name:exact", "Lévêque")]).filter == {"sp.name.x": "Lévêque"}


def test_reference_type_id(registry: SearchParameterRegistry) -> None:
    assert compiled(registry, "Observation", [("subject", "Patient/p1")]).filter == {"sp.subject.r": "Patient/p1"}


def test_an_audit_event_patient_condition_is_also_put_on_entity_whose_index_covers_it(
        registry: SearchParameterRegistry) -> None:
    """``audit_values.COVERING``: the trail has no ``patient`` index; every patient is also an entity."""
    assert compiled(registry, "AuditEvent", [("patient", "p1,p2")]).filter == {"$and": [
        {"$or": [{"sp.patient.r": "Patient/p1"}, {"sp.patient.r": "Patient/p2"}]},
        {"$or": [{"sp.entity.r": "Patient/p1"}, {"sp.entity.r": "Patient/p2"}]}]}
    revinclude = compiled(registry, "Patient", [("_revinclude", "AuditEvent:patient")]).includes[0]
    assert revinclude.reverse_filter(["Patient/p1"]) == {"$and": [{"sp.patient.r": {"$in": ["Patient/p1"]}},
                                                                  {"sp.entity.r": {"$in": ["Patient/p1"]}}]}


def test_a_negated_or_missing_audit_event_patient_condition_is_not_put_on_entity(
        registry: SearchParameterRegistry) -> None:
    """An event without a matching patient matches ``:missing=true`` (and ``:not``): nothing is implied of its
    entities."""
    assert compiled(registry, "AuditEvent", [("patient:missing", "true")]).filter == {
        "sp.patient": {"$exists": False}}
    assert compiled(registry, "Observation", [("patient", "p1")]).filter == {"sp.patient.r": "Patient/p1"}


def test_a_redefined_audit_event_parameter_ends_the_covering(registry: SearchParameterRegistry) -> None:
    """A SearchParameter of the trail's other than R4's may select other values: ``patient`` then stands alone."""
    registry.add_or_replace({"resourceType": "SearchParameter", "url": "https://example.org/sp/audit-entity",
                             "name": "entity", "status": "active", "code": "entity", "base": ["AuditEvent"],
                             "type": "reference", "expression": "AuditEvent.entity.what.where(resolve() is Group)"})
    assert compiled(registry, "AuditEvent", [("patient", "p1")]).filter == {"sp.patient.r": "Patient/p1"}


def test_reference_bare_id_uses_the_single_target_type(registry: SearchParameterRegistry) -> None:
    assert compiled(registry, "Observation", [("patient", "p1")]).filter == {"sp.patient.r": "Patient/p1"}
    assert compiled(registry, "Observation", [("subject", "p1")]).filter == {"sp.subject.i": "p1"}
    assert compiled(registry, "Observation", [("subject:Patient", "p1")]).filter == {"sp.subject.r": "Patient/p1"}


def test_reference_own_base_url_is_made_relative(registry: SearchParameterRegistry) -> None:
    parsed = parse_search(
        registry,
        "Observation",
        [("subject", "http://srv/fhir/Patient/p1")],
        strict=True,
        base_url="http://srv/fhir",
    )
    assert compile_search(parsed).filter == {"sp.subject.r": "Patient/p1"}
    other = compiled(registry, "Observation", [("subject", "http://other/fhir/Patient/p1")])
    assert other.filter == {"sp.subject.u": "http://other/fhir/Patient/p1"}


def test_reference_identifier_modifier(registry: SearchParameterRegistry) -> None:
    c = compiled(registry, "Observation", [("subject:identifier", f"{B}/sid/patient|FR-1")])
    assert c.filter == {"sp.subject": {"$elemMatch": {"ic": "FR-1", "is": f"{B}/sid/patient"}}}


def test_date_eq_requires_the_resource_range_inside_the_search_range(
    registry: SearchParameterRegistry,
) -> None:
    c = compiled(registry, "Patient", [("birthdate", "1956-04")])
    assert c.filter == {"$and": [
        {"sp.birthdate": {"$elemMatch": {"lo": {"$gte": utc(1956, 4, 1)}, "hi": {"$lte": utc(1956, 5, 1)}}}},
        {"sp._sort.birthdate.d": {"$gt": utc(1956, 4, 1)}, "sp._sort.birthdate.a": {"$lt": utc(1956, 5, 1)}},
    ]}


@pytest.mark.parametrize(
    ("prefix", "condition", "implied"),
    [
        ("gt", {"hi": {"$gt": utc(2021, 1, 1)}}, {"sp._sort.date.d": {"$gt": utc(2021, 1, 1)}}),
        ("lt", {"lo": {"$lt": utc(2020, 1, 1)}}, {"sp._sort.date.a": {"$lt": utc(2020, 1, 1)}}),
        ("sa", {"lo": {"$gte": utc(2021, 1, 1)}}, {"sp._sort.date.d": {"$gt": utc(2021, 1, 1)}}),
        ("eb", {"hi": {"$lte": utc(2020, 1, 1)}}, {"sp._sort.date.a": {"$lt": utc(2020, 1, 1)}}),
        ("ne", {"$or": [{"lo": {"$lt": utc(2020, 1, 1)}}, {"hi": {"$gt": utc(2021, 1, 1)}}]}, {}),
    ],
)
def test_date_prefixes_compare_ranges(
    registry: SearchParameterRegistry, prefix: str, condition: dict[str, Any], implied: dict[str, Any]
) -> None:
    """The entry condition, plus the bound it implies on the scalar sort keys (for the compound indexes)."""
    c = compiled(registry, "Observation", [("date", f"{prefix}2020")])
    if len(condition) == 1 and "$or" not in condition:  # one field: dot notation is the same as $elemMatch
        ((key, value),) = condition.items()
        entry = {f"sp.date.{key}": value}
    else:
        entry = {"sp.date": {"$elemMatch": condition}}
    assert c.filter == ({"$and": [entry, implied]} if implied else entry)


def test_last_updated_is_compared_on_the_document_instant(registry: SearchParameterRegistry) -> None:
    c = compiled(registry, "Patient", [("_lastUpdated", "ge2020-01-01T00:00:00Z"), ("_lastUpdated", "lt2020-02")])
    assert c.filter == {"$and": [{"lastUpdated": {"$gte": utc(2020, 1, 1)}}, {"lastUpdated": {"$lt": utc(2020, 2, 1)}}]}


def test_id_is_the_document_id(registry: SearchParameterRegistry) -> None:
    assert compiled(registry, "Patient", [("_id", "a")]).filter == {"_id": "a"}
    assert compiled(registry, "Patient", [("_id", "a,b")]).filter == {"_id": {"$in": ["a", "b"]}}


def test_missing_true_and_false(registry: SearchParameterRegistry) -> None:
    assert compiled(registry, "Patient", [("birthdate:missing", "true")]).filter == {"sp.birthdate": {"$exists": False}}
    assert compiled(registry, "Patient", [("birthdate:missing", "false")]).filter == {"sp.birthdate": {"$exists": True}}


def test_number_and_quantity_values_are_exact_decimals(registry: SearchParameterRegistry) -> None:
    c = compiled(registry, "Observation", [("value-quantity", "5.40|http://unitsofmeasure.org|%")])
    as_written = {"lo": {"$gte": Decimal128("5.395")}, "hi": {"$lte": Decimal128("5.405")},
                  "s": "http://unitsofmeasure.org", "c": "%"}
    # the same value in UCUM's canonical units (% is the unity divided by 100), matching any commensurable unit
    converted = {"k.v": {"$gte": Decimal128("0.05395"), "$lt": Decimal128("0.05405")}, "k.u": "1"}
    assert c.filter == {"sp.value-quantity": {"$elemMatch": {"$or": [as_written, converted]}}}
    c = compiled(registry, "Observation", [("value-quantity", "gt0.1||%")])
    assert c.filter == {
        "sp.value-quantity": {"$elemMatch": {"vh": {"$gt": Decimal128("0.1")}, "$or": [{"c": "%"}, {"u": "%"}]}}
    }


def test_uri_below_and_above(registry: SearchParameterRegistry) -> None:
    assert compiled(registry, "ValueSet", [("url:below", f"{B}/ValueSet")]).filter == {
        "sp.url": {"$regex": "^https://cml\\-registry\\.eu/fhir/ValueSet"}
    }
    assert uri_prefixes("http://a/b/c") == ["http://a", "http://a/b", "http://a/b/c"]


def test_composite_matches_components_on_one_entry(registry: SearchParameterRegistry) -> None:
    c = compiled(registry, "Observation", [("code-value-quantity", "http://loinc.org|69380-4$lt0.1")])
    assert c.filter == {
        "sp.code-value-quantity": {
            "$elemMatch": {"k0.s": "http://loinc.org", "k0.c": "69380-4", "k1.vl": {"$lt": Decimal128("0.1")}}
        }
    }


def test_chain_compiles_an_inner_search_per_target_type(registry: SearchParameterRegistry) -> None:
    c = compiled(registry, "Observation", [("subject:Patient.identifier", "s|v")])
    assert c.filter == {}
    (chain,) = c.chains
    assert chain.outer_field == "sp.subject.r"
    assert [(t, inner.filter) for t, inner in chain.targets] == [
        ("Patient", {"sp.identifier": {"$elemMatch": {"s": "s", "c": "v"}}})
    ]
    assert chain.join_filter({"Patient": ["p2", "p1"]}) == {"sp.subject.r": {"$in": ["Patient/p1", "Patient/p2"]}}


def test_chain_of_two_levels(registry: SearchParameterRegistry) -> None:
    c = compiled(registry, "Observation", [("patient.organization.identifier", "s|FR-POI")])
    ((inner_type, inner),) = c.chains[0].targets
    assert inner_type == "Patient"
    assert inner.chains[0].outer_field == "sp.organization.r"
    assert inner.chains[0].targets[0][1].filter == {"sp.identifier": {"$elemMatch": {"s": "s", "c": "FR-POI"}}}


def test_chain_without_type_uses_the_targets_having_the_parameter(registry: SearchParameterRegistry) -> None:
    c = compiled(registry, "Observation", [("subject.name", "x")])
    assert {t for t, _ in c.chains[0].targets} == {"Patient", "Group", "Device", "Location"} & set(
        t for t, _ in c.chains[0].targets
    )
    assert "Patient" in {t for t, _ in c.chains[0].targets}


def test_has_compiles_the_inner_search_and_reads_referenced_ids(registry: SearchParameterRegistry) -> None:
    parsed = parse_search(
        registry, "Patient", [("_has:Observation:patient:code", "http://loinc.org|69380-4")], strict=True
    )
    assert isinstance(parsed.clauses[0], HasClause)
    (has,) = compile_search(parsed).has
    assert (has.source_type, has.source_code, has.target_type) == ("Observation", "patient", "Patient")
    assert has.inner.filter == {"sp.code": {"$elemMatch": {"s": "http://loinc.org", "c": "69380-4"}}}
    docs = [{"sp": {"patient": [{"r": "Patient/p1", "t": "Patient", "i": "p1"}]}}, {"sp": {}}]
    assert has.referenced_ids(docs) == {"p1"}
    assert has.join_filter({"p1"}) == {"_id": {"$in": ["p1"]}}


def test_nested_has(registry: SearchParameterRegistry) -> None:
    parsed = parse_search(
        registry, "Patient", [("_has:Observation:patient:_has:Observation:has-member:code", "x")], strict=True
    )
    (has,) = compile_search(parsed).has
    assert has.inner.has[0].source_code == "has-member"
    assert has.inner.has[0].target_type == "Observation"


def test_sort_uses_scalar_sort_keys_and_ends_with_id(registry: SearchParameterRegistry) -> None:
    c = compiled(registry, "Observation", [("_sort", "-date,code,_lastUpdated")])
    assert c.sort == [("sp._sort.date.d", -1), ("sp._sort.date.a", -1), ("sp._sort.code.a", 1),
                      ("sp._sort.code.d", 1), ("lastUpdated", 1), ("_id", 1)]
    assert compiled(registry, "Observation", [("_sort", "-date")]).sort == [
        ("sp._sort.date.d", -1), ("sp._sort.date.a", -1), ("_id", -1)]
    assert compiled(registry, "Observation", [("_sort", "-_id")]).sort == [("_id", -1)]


def test_includes_and_revincludes(registry: SearchParameterRegistry) -> None:
    c = compiled(
        registry,
        "Observation",
        [("_include", "Observation:subject:Patient"), ("_revinclude:iterate", "Observation:has-member")],
    )
    include, revinclude = c.includes
    assert (include.codes, include.target_type, include.reverse) == (("subject",), "Patient", False)
    assert include.targets(
        {
            "sp": {
                "subject": [
                    {"r": "Patient/p", "t": "Patient", "i": "p"},
                    {"r": "Group/g", "t": "Group", "i": "g"},
                ]
            }
        }
    ) == [("Patient", "p")]
    assert revinclude.iterate and revinclude.reverse
    assert revinclude.reverse_filter(["Observation/o1"]) == {"sp.has-member.r": {"$in": ["Observation/o1"]}}
    star = compiled(registry, "Observation", [("_include", "*")]).includes[0]
    assert "subject" in star.codes and "performer" in star.codes


def test_result_parameters_are_parsed(registry: SearchParameterRegistry) -> None:
    parsed = parse_search(
        registry,
        "Patient",
        [
            ("_count", "5"),
            ("_total", "accurate"),
            ("_summary", "count"),
            ("_elements", "id,gender"),
            ("_format", "json"),
        ],
        strict=True,
    )
    assert (parsed.count, parsed.total, parsed.summary, parsed.elements) == (
        5,
        "accurate",
        "count",
        ("id", "gender"),
    )


def test_system_search_with_type(registry: SearchParameterRegistry) -> None:
    parsed = parse_search(registry, None, [("_type", "Patient,Observation"), ("_lastUpdated", "gt2020")], strict=True)
    assert parsed.types == ("Patient", "Observation")
    assert compile_search(parsed).filter == {"lastUpdated": {"$gte": utc(2021, 1, 1)}}


def test_lenient_ignores_and_reports_unknown_parameters(registry: SearchParameterRegistry) -> None:
    parsed = parse_search(registry, "Patient", [("foo", "bar"), ("gender", "male")], strict=False)
    assert parsed.ignored == (("foo", "no search parameter 'foo' on Patient"),)
    assert parsed.applied_query() == "gender=male"


def test_strict_rejects_unknown_parameters(registry: SearchParameterRegistry) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_search(registry, "Patient", [("foo", "bar")], strict=True)
    assert info.value.issues[0].code == "not-supported"
    assert "foo" in info.value.issues[0].diagnostics


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("birthdate", "1956-13", "invalid"),
        ("birthdate", "xx1956", "invalid"),
        ("birthdate", "yesterday", "invalid"),
        ("value-quantity", "ge1;5", "invalid"),
        ("value-quantity", "abc", "invalid"),
        ("gender:contains", "m", "not-supported"),
        ("birthdate:exact", "2020", "not-supported"),
        ("birthdate:missing", "maybe", "invalid"),
        ("_count", "-1", "invalid"),
        ("_summary", "maybe", "invalid"),
        ("identifier", "a|b|c", "invalid"),
        ("_include", "Observation", "invalid"),
    ],
)
def test_invalid_values_are_rejected_naming_the_parameter(
    registry: SearchParameterRegistry, name: str, value: str, code: str
) -> None:
    resource_type = "Observation" if name == "value-quantity" else "Patient"
    with pytest.raises(InvalidRequest) as info:
        parse_search(registry, resource_type, [(name, value)], strict=False)
    assert info.value.issues[0].code == code
    assert name.split(":")[0] in info.value.issues[0].diagnostics


def test_include_from_another_source_type_is_ignored_when_lenient_and_rejected_when_strict(
    registry: SearchParameterRegistry,
) -> None:
    """``Patient?_include=Observation:subject`` can include nothing (the matches are Patients): like an unknown
    parameter, ignored and reported under lenient handling, 400 under strict (search.html#errors)."""
    parsed = parse_search(registry, "Patient", [("_include", "Observation:subject")], strict=False)
    assert parsed.includes == () and parsed.ignored[0][0] == "_include=Observation:subject"
    with pytest.raises(InvalidRequest) as info:
        parse_search(registry, "Patient", [("_include", "Observation:subject")], strict=True)
    assert info.value.issues[0].code == "not-supported"


def test_applied_query_is_canonical(registry: SearchParameterRegistry) -> None:
    parsed = parse_search(
        registry,
        "Observation",
        [
            ("code", r"http://loinc.org|69380-4,a\,b"),
            ("subject:Patient.identifier", "s|v"),
            ("_sort", "-date"),
            ("_count", "10"),
            ("_include", "Observation:subject"),
            ("bogus", "1"),
        ],
        strict=False,
    )
    assert parsed.applied_query() == (
        r"code=http://loinc.org|69380-4,a%5C,b&subject:Patient.identifier=s|v&_sort=-date&_count=10"
        "&_include=Observation:subject"
    )


# R4's shared ``patient`` parameter (clinical-patient) targets Patient and Group (search-parameters.json); on an
# Observation its branch is ``subject.where(resolve() is Patient)``, so only Patient references are indexed and a
# bare id names a Patient; AllergyIntolerance.patient has no such restriction, so the bare id matches any type.
BARE_ID_TARGETS = [
    ("Observation", ("Patient",), {"sp.patient.r": "Patient/p1"}),
    ("Condition", ("Patient",), {"sp.patient.r": "Patient/p1"}),
    ("AllergyIntolerance", ("Patient", "Group"), {"sp.patient.i": "p1"}),
]


@pytest.mark.parametrize(("resource_type", "targets", "expected"), BARE_ID_TARGETS,
                         ids=[row[0] for row in BARE_ID_TARGETS])
def test_a_bare_id_names_the_types_the_parameter_indexes_on_that_type(
        registry: SearchParameterRegistry, resource_type: str, targets: tuple[str, ...], expected: Any) -> None:
    parameter = registry.get(resource_type, "patient")
    assert parameter is not None and parameter.target == ("Patient", "Group")
    assert registry.targets_for(parameter, resource_type) == targets
    assert compiled(registry, resource_type, [("patient", "p1")]).filter == expected
