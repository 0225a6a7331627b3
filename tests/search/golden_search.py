"""Golden search semantics: tiny data set, queries and expected ids, derived by hand from
https://hl7.org/fhir/R4/search.html (parameter types, prefixes, modifiers, chaining, ``_has``, ``_list``,
``_sort``) and from https://hl7.org/fhir/R4/search_filter.html (``_filter``).

Data, not tests: ``test_golden_mongo.py`` runs every case on a real mongod with the compiled filters; the
integration engineer can run the same table over HTTP (``GET [base]/{type}?{query}``, compare entry ids;
``ordered`` cases compare the order too, the others compare sets).

Notes on choices the spec leaves to the server (documented in ``fhir_server.search.compile``):
* dates without a time zone are calendar ranges in UTC on both sides; ``eq`` = the resource's range lies
  inside the search range, so ``birthdate=1956-04-02`` does not match ``birthDate: 1956-04``;
* number/quantity ``eq`` compares precision ranges (``1.500`` does not match ``1.50``), ``gt``/``lt`` exact
  values;
* ``_sort`` ascending puts resources without the parameter first, descending last;
* ``_filter`` (``fhir_server.search.filter_param``): a test means what the equivalent plain parameter means; string
  ``eq`` is the same text, case- and accent-insensitive as string search is; ``ne`` on a string or a reference is
  "no value equal" (``not (eq)``), on a token ``:not``; ``po`` is "the date ranges overlap".
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

B = "https://cml-registry.eu/fhir"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CONCEPTS = f"{B}/CodeSystem/ifp-concepts"


def _at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# (resource, lastUpdated)
RESOURCES: list[tuple[dict[str, Any], datetime]] = [
    (
        {
            "resourceType": "Organization",
            "id": "c1",
            "identifier": [{"system": f"{B}/sid/center", "value": "FR-POI"}],
            "name": "CHU de Poitiers",
        },
        _at(2019, 1, 1),
    ),
    (
        {
            "resourceType": "Patient",
            "id": "p1",
            "identifier": [{"system": f"{B}/sid/patient", "value": "FR-POI-0042"}],
            "gender": "male",
            "birthDate": "1956-04-02",
            "name": [{"family": "Lévêque"}],
            "managingOrganization": {"reference": "Organization/c1"},
        },
        _at(2020, 1, 1, 12),
    ),
    (
        {
            "resourceType": "Patient",
            "id": "p2",
            "identifier": [{"system": f"{B}/sid/patient", "value": "FR-POI-0043"}],
            "gender": "female",
            "birthDate": "1956-04",
            "name": [{"family": "Levy"}],
            "managingOrganization": {"reference": "Organization/c1"},
        },
        _at(2020, 1, 2),
    ),
    (
        {
            "resourceType": "Patient",
            "id": "p3",
            "identifier": [{"system": "urn:other", "value": "FR-POI-0042"}],
            "gender": "female",
            "name": [{"family": "Martin"}],
        },
        datetime(2019, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
    ),
    (
        {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "69380-4"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2007-03-04",
            "valueQuantity": {"value": Decimal("1.50"), "unit": "%", "system": UCUM, "code": "%"},
        },
        _at(2020, 2, 1),
    ),
    (
        {
            "resourceType": "Observation",
            "id": "o2",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "69380-4"}]},
            "subject": {"reference": "Patient/p2"},
            "effectiveDateTime": "2007-03",
            "valueQuantity": {"value": Decimal("0.1"), "unit": "%", "system": UCUM, "code": "%"},
        },
        _at(2020, 2, 2),
    ),
    (
        {
            "resourceType": "Observation",
            "id": "o3",
            "status": "final",
            "code": {"coding": [{"system": CONCEPTS, "code": "registration-reason"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2007-12-31T23:30:00-02:00",
            "valueCodeableConcept": {
                "coding": [{"system": f"{B}/CodeSystem/ifp-registration-reason", "code": "no-chr-3m"}]
            },
            "component": [
                {
                    "code": {"coding": [{"system": CONCEPTS, "code": "phase-at-registration"}]},
                    "valueCodeableConcept": {
                        "coding": [{"system": f"{B}/CodeSystem/ifp-disease-phase", "code": "chronic"}]
                    },
                }
            ],
        },
        _at(2020, 2, 3),
    ),
    (
        {
            "resourceType": "Observation",
            "id": "o4",
            "status": "preliminary",
            "code": {"text": "Free text BCR"},
            "subject": {"reference": "Group/g1"},
            "valueQuantity": {"value": 100, "unit": "mg"},
        },
        _at(2020, 2, 4),
    ),
    (
        {
            "resourceType": "Observation",
            "id": "o5",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "777-3"}]},
            "subject": {"reference": "Patient/p2"},
            "effectivePeriod": {"start": "2006-06-01", "end": "2007-06-30"},
            "valueQuantity": {"value": Decimal("100.0"), "unit": "10*9/L", "system": UCUM, "code": "10*9/L"},
        },
        _at(2020, 2, 5),
    ),
    (
        {
            "resourceType": "List",
            "id": "l1",
            "status": "current",
            "mode": "working",
            "entry": [{"item": {"reference": "Patient/p1"}}, {"item": {"reference": "Patient/p3"}},
                      {"item": {"reference": "Observation/o2"}}],
        },
        _at(2020, 3, 1),
    ),
]

Case = tuple[str, str, list[tuple[str, str]], list[str], bool]  # (name, type, query, expected ids, ordered)


def q(text: str) -> list[tuple[str, str]]:
    """``a=1&b=2`` -> pairs (values here are written unencoded)."""
    return [tuple(part.split("=", 1)) for part in text.split("&")]  # type: ignore[misc]


CASES: list[Case] = [
    # token
    ("token system|code", "Patient", q(f"identifier={B}/sid/patient|FR-POI-0042"), ["p1"], False),
    ("token code alone matches any system", "Patient", q("identifier=FR-POI-0042"), ["p1", "p3"], False),
    ("token |code matches only entries without system", "Patient", q("identifier=|FR-POI-0042"), [], False),
    ("token on code element", "Patient", q("gender=female"), ["p2", "p3"], False),
    ("token :not", "Patient", q("gender:not=male"), ["p2", "p3"], False),
    (
        "token :not includes resources without the element",
        "Observation",
        q(f"code:not={LOINC}|69380-4"),
        ["o3", "o4", "o5"],
        False,
    ),
    ("token OR", "Observation", q(f"code={LOINC}|777-3,{CONCEPTS}|registration-reason"), ["o3", "o5"], False),
    ("token AND", "Observation", q(f"code={LOINC}|69380-4&subject=Patient/p1"), ["o1"], False),
    ("token :text on CodeableConcept.text", "Observation", q("code:text=free"), ["o4"], False),
    ("token system|", "Observation", q(f"code={LOINC}|"), ["o1", "o2", "o5"], False),
    # string
    ("string is case/accent-insensitive starts-with", "Patient", q("family=lev"), ["p1", "p2"], False),
    ("string :exact", "Patient", q("family:exact=Levy"), ["p2"], False),
    ("string :exact is case sensitive", "Patient", q("family:exact=levy"), [], False),
    ("string :contains", "Patient", q("family:contains=ar"), ["p3"], False),
    ("string name matches family with accents", "Patient", q("name=LÉVÊ"), ["p1"], False),
    # date
    ("date month matches days within it", "Patient", q("birthdate=1956-04"), ["p1", "p2"], False),
    (
        "date eq on partial month value does not match day",
        "Patient",
        q("birthdate=1956-04-02"),
        ["p1"],
        False,
    ),
    ("date gt: range above intersects", "Patient", q("birthdate=gt1956-04-01"), ["p1", "p2"], False),
    ("date lt: range below intersects", "Patient", q("birthdate=lt1956-04-02"), ["p2"], False),
    ("date :missing", "Patient", q("birthdate:missing=true"), ["p3"], False),
    ("date month on dateTime and Period", "Observation", q("date=2007-03"), ["o1", "o2"], False),
    ("date with offset is converted to UTC", "Observation", q("date=2008-01-01"), ["o3"], False),
    ("date local evening is the next UTC day", "Observation", q("date=2007-12-31"), [], False),
    ("date ge", "Observation", q("date=ge2007-06"), ["o3"], False),
    ("date sa", "Observation", q("date=sa2007-01"), ["o1", "o2", "o3"], False),
    ("date eb", "Observation", q("date=eb2007-01"), [], False),
    ("date lt on a period start", "Observation", q("date=lt2007-01"), ["o5"], False),
    ("date ne", "Observation", q("date=ne2007-03"), ["o3", "o5"], False),
    (
        "date AND: a period overlapping both bounds matches",
        "Observation",
        q("date=ge2007-01-01&date=lt2007-04-01"),
        ["o1", "o2", "o5"],
        False,
    ),
    # number / quantity
    ("quantity eq uses the search precision", "Observation", q("value-quantity=1.5"), ["o1"], False),
    ("quantity eq with system and code", "Observation", q(f"value-quantity=1.50|{UCUM}|%"), ["o1"], False),
    (
        "quantity more precise search does not match less precise value",
        "Observation",
        q("value-quantity=1.500"),
        [],
        False,
    ),
    ("quantity 100 matches 100 and 100.0", "Observation", q("value-quantity=100"), ["o4", "o5"], False),
    ("quantity ||code matches code or unit", "Observation", q("value-quantity=100||mg"), ["o4"], False),
    ("quantity gt compares exact values", "Observation", q("value-quantity=gt1"), ["o1", "o4", "o5"], False),
    ("quantity lt", "Observation", q("value-quantity=lt1"), ["o2"], False),
    ("quantity le", "Observation", q("value-quantity=le0.1"), ["o2"], False),
    ("quantity ap is within 10 percent", "Observation", q("value-quantity=ap95"), ["o4", "o5"], False),
    # a UCUM search value in another unit of the same kind (search.html#quantity: the server may convert units;
    # then eq asks the stored value to lie in the search value's precision range):
    # 0.1 10*12/L is [0.05, 0.15) 10*12/L = [50, 150) 10*9/L, which holds o5's 100.0 10*9/L
    ("quantity in another UCUM unit", "Observation", q(f"value-quantity=0.1|{UCUM}|10*12/L"), ["o5"], False),
    # 0.015 of the unity is [1.45, 1.55) %, which holds o1's 1.50 %; o2's 0.1 % is 0.001
    ("quantity % is the unity divided by 100", "Observation", q(f"value-quantity=0.015|{UCUM}|1"), ["o1"], False),
    # 100.0 10*9/L is exactly 100000 /uL (1e14 per m3): le holds, gt does not
    ("quantity converted exactly, le", "Observation", q(f"value-quantity=le100000|{UCUM}|/uL"), ["o5"], False),
    ("quantity converted exactly, gt", "Observation", q(f"value-quantity=gt100000|{UCUM}|/uL"), [], False),
    ("quantity converted exactly, ge", "Observation", q(f"value-quantity=ge100000|{UCUM}|/uL"), ["o5"], False),
    ("quantity converted exactly, lt", "Observation", q(f"value-quantity=lt100000|{UCUM}|/uL"), [], False),
    # sa: 1e14 per m3 starts after 99999 /uL = [99998.5, 99999.5) /uL; eb: ends before 100001 /uL's [100000.5, ...)
    ("quantity converted, sa", "Observation", q(f"value-quantity=sa99999|{UCUM}|/uL"), ["o5"], False),
    ("quantity converted, eb", "Observation", q(f"value-quantity=eb100001|{UCUM}|/uL"), ["o5"], False),
    # ap: 0.095 +/- 10 % in the unit searched is [0.0855, 0.1045] 10*12/L, which holds 0.1 10*12/L
    ("quantity ap in another unit", "Observation", q(f"value-quantity=ap0.095|{UCUM}|10*12/L"), ["o5"], False),
    # 100.0 10*9/L is 0.1000 10*12/L, in [0.09995, 0.10005) (in its own unit, 100 would not match 100.0)
    ("quantity eq converted is the stored value in the search range", "Observation",
     q(f"value-quantity=0.1000|{UCUM}|10*12/L"), ["o5"], False),
    # ne: [0.15, 0.25) 10*12/L does not hold 100.0 10*9/L; values of another kind (%) are not compared
    ("quantity ne in another unit", "Observation", q(f"value-quantity=ne0.2|{UCUM}|10*12/L"), ["o5"], False),
    # a mass is not a count per volume, nor o4's 100 "mg" without a system
    ("quantity of another kind never matches", "Observation", q(f"value-quantity=gt0|{UCUM}|mg"), [], False),
    # reference
    ("reference Type/id", "Observation", q("subject=Patient/p1"), ["o1", "o3"], False),
    ("reference id with a single target type", "Observation", q("patient=p2"), ["o2", "o5"], False),
    ("reference id alone matches any type", "Observation", q("subject=g1"), ["o4"], False),
    ("reference :Type", "Observation", q("subject:Group=g1"), ["o4"], False),
    ("reference :missing", "Observation", q("patient:missing=true"), ["o4"], False),
    # composite
    (
        "composite code$value-quantity",
        "Observation",
        q(f"code-value-quantity={LOINC}|69380-4$gt1"),
        ["o1"],
        False,
    ),
    (
        "composite with a quantity in another UCUM unit",
        "Observation",
        q(f"code-value-quantity={LOINC}|777-3$0.1|{UCUM}|10*12/L"),
        ["o5"],
        False,
    ),
    (
        "composite components on the same value",
        "Observation",
        q(f"code-value-quantity={LOINC}|777-3$lt1"),
        [],
        False,
    ),
    (
        "composite component code$concept",
        "Observation",
        q(f"component-code-value-concept={CONCEPTS}|phase-at-registration${B}/CodeSystem/ifp-disease-phase|chronic"),
        ["o3"],
        False,
    ),
    # _id / _lastUpdated
    ("_id list", "Patient", q("_id=p1,p3"), ["p1", "p3"], False),
    ("_lastUpdated eq day", "Patient", q("_lastUpdated=2020-01-01"), ["p1"], False),
    ("_lastUpdated gt day", "Patient", q("_lastUpdated=gt2020-01-01"), ["p2"], False),
    ("_lastUpdated lt day", "Patient", q("_lastUpdated=lt2020-01-01"), ["p3"], False),
    # chaining / _has
    (
        "chain to Patient identifier",
        "Observation",
        q(f"subject:Patient.identifier={B}/sid/patient|FR-POI-0042"),
        ["o1", "o3"],
        False,
    ),
    (
        "chain of two levels",
        "Observation",
        q(f"patient.organization.identifier={B}/sid/center|FR-POI"),
        ["o1", "o2", "o3", "o5"],
        False,
    ),
    ("chain to a date", "Observation", q("subject:Patient.birthdate=1956-04-02"), ["o1", "o3"], False),
    ("_has", "Patient", q(f"_has:Observation:patient:code={LOINC}|69380-4"), ["p1", "p2"], False),
    ("_has on a value", "Patient", q("_has:Observation:subject:value-concept=no-chr-3m"), ["p1"], False),
    (
        "nested _has",
        "Organization",
        q("_has:Patient:organization:_has:Observation:patient:code=777-3"),
        ["c1"],
        False,
    ),
    # _list (search.html#list): the resources a List refers to in entry.item
    ("_list", "Patient", q("_list=l1"), ["p1", "p3"], False),
    ("_list keeps the searched type's items", "Observation", q("_list=l1"), ["o2"], False),
    ("_list and another parameter", "Patient", q("_list=l1&gender=female"), ["p3"], False),
    ("_list of several lists", "Patient", q("_list=none,l1"), ["p1", "p3"], False),
    ("_list of an unknown list", "Patient", q("_list=none"), [], False),
    # _filter (search_filter.html): the tests, the logic (left to right, no precedence), by parameter type
    ("_filter string eq is the same text, any case", "Patient", q('_filter=family eq "levy"'), ["p2"], False),
    ("_filter string eq ignores accents", "Patient", q('_filter=family eq "LEVEQUE"'), ["p1"], False),
    ("_filter string eq is not starts-with", "Patient", q('_filter=family eq "lev"'), [], False),
    ("_filter string co", "Patient", q('_filter=family co "ev"'), ["p1", "p2"], False),
    ("_filter string sw", "Patient", q("_filter=family sw mar"), ["p3"], False),
    ("_filter string ew", "Patient", q('_filter=family ew "QUE"'), ["p1"], False),
    ("_filter string ne: no value equal", "Patient", q('_filter=family ne "levy"'), ["p1", "p3"], False),
    ("_filter and", "Patient", q("_filter=gender eq female and birthdate pr true"), ["p2"], False),
    ("_filter or", "Patient", q("_filter=gender eq male or family eq martin"), ["p1", "p3"], False),
    ("_filter keywords in any case", "Patient", q("_filter=gender eq male OR family eq levy"), ["p1", "p2"], False),
    ("_filter not", "Patient", q("_filter=not(gender eq female)"), ["p1"], False),
    ("_filter not of an or", "Patient", q("_filter=not (gender eq male or family sw mar)"), ["p2"], False),
    # (levy or male) and martin: nobody; "and" first would give p2
    ("_filter and/or apply left to right", "Patient",
     q("_filter=family eq levy or gender eq male and family eq martin"), [], False),
    ("_filter parentheses", "Patient", q("_filter=family eq levy or (gender eq male and family eq martin)"),
     ["p2"], False),
    ("_filter token code alone", "Patient", q("_filter=identifier eq FR-POI-0042"), ["p1", "p3"], False),
    ("_filter token system|code", "Patient", q(f"_filter=identifier eq {B}/sid/patient|FR-POI-0042"), ["p1"], False),
    ("_filter token ne is :not", "Patient", q("_filter=gender ne female"), ["p1"], False),
    ("_filter token loinc stands for its system", "Observation", q("_filter=code eq loinc|69380-4"), ["o1", "o2"],
     False),
    ("_filter token ne includes resources without the element", "Observation",
     q("_filter=code ne loinc|69380-4"), ["o3", "o4", "o5"], False),
    ("_filter date ge", "Patient", q("_filter=birthdate ge 1956-04-02"), ["p1", "p2"], False),
    ("_filter date eq: the range lies inside", "Observation", q("_filter=date eq 2007-06"), [], False),
    ("_filter date po: the ranges overlap", "Observation", q("_filter=date po 2007-06"), ["o5"], False),
    # o3 is 2008-01-01T01:30Z
    ("_filter date po a year", "Observation", q("_filter=date po 2007"), ["o1", "o2", "o5"], False),
    ("_filter quantity gt", "Observation", q("_filter=value-quantity gt 1"), ["o1", "o4", "o5"], False),
    ("_filter quantity eq uses the precision", "Observation", q("_filter=value-quantity eq 1.5"), ["o1"], False),
    ("_filter quantity with the ucum alias", "Observation", q("_filter=value-quantity eq 1.50|ucum|%"), ["o1"],
     False),
    ("_filter quantity ap", "Observation", q("_filter=value-quantity ap 95"), ["o4", "o5"], False),
    ("_filter quantity pr false", "Observation", q("_filter=value-quantity pr false"), ["o3"], False),
    ("_filter reference re", "Observation", q("_filter=subject re Patient/p1"), ["o1", "o3"], False),
    ("_filter reference ne: no reference equal", "Observation", q("_filter=subject ne Patient/p1"),
     ["o2", "o4", "o5"], False),
    ("_filter chain", "Observation", q('_filter=patient.family eq "levy"'), ["o2", "o5"], False),
    ("_filter chain and a test", "Observation", q("_filter=patient.family eq levy and code eq loinc|777-3"), ["o5"],
     False),
    ("_filter _id", "Patient", q("_filter=_id ne p1"), ["p2", "p3"], False),
    ("_filter _lastUpdated", "Patient", q("_filter=_lastUpdated ge 2020-01-01"), ["p1", "p2"], False),
    ("_filter and another parameter", "Patient", q("_filter=family sw lev&gender=female"), ["p2"], False),
    # _sort
    (
        "sort date ascending, missing first",
        "Observation",
        q("_sort=date"),
        ["o4", "o5", "o2", "o1", "o3"],
        True,
    ),
    (
        "sort date descending, missing last",
        "Observation",
        q("_sort=-date"),
        ["o3", "o5", "o2", "o1", "o4"],
        True,
    ),
    ("sort on a string", "Patient", q("_sort=family"), ["p1", "p2", "p3"], True),
    ("sort on two keys", "Patient", q("_sort=gender,-_lastUpdated"), ["p2", "p3", "p1"], True),
    (
        "sort _lastUpdated descending",
        "Observation",
        q("_sort=-_lastUpdated"),
        ["o5", "o4", "o3", "o2", "o1"],
        True,
    ),
]
