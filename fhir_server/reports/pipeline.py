"""The MongoDB aggregation behind ``$registry-report`` (data-contract.md, "The registry report").

One pipeline, run through ``ResourceStore.aggregate`` on ``Patient``, which puts the access filter in front of
every collection the pipeline reads (``storage/aggregation.py``). ``$unionWith`` brings in the registration,
decision and Sokal Observations, the CML Conditions and the imatinib MedicationStatements; every document is
reduced to a few fields keyed by its patient, then ``$group`` makes one row per patient (every Patient,
registration Observation or not), the registration date falls back as defined below (each Patient's first
version in history comes in by one more ``$unionWith``), the center Organization (country, center code) is
picked from every Organization read once (an uncorrelated ``$lookup``), the filters apply, and ``$facet``
computes every section. No stage runs a sub-query per patient: the cost grows linearly with the registry
(bench/README.md, "The registry report at scale"). Medians are
computed in the database (MongoDB 6.0 has no ``$median``): values are collected with ``$push``, sorted with
``$sortArray`` and the middle element(s) picked. Only the facet results (a few dozen small documents) reach
Python.

Read from ``resource.*`` only. Definitions (data-contract.md v0.2, "Definitions"):

* registered patient: every Patient stored (not deleted) - being submitted is being registered; a registration
  Observation (ifp-concepts#registration-reason) is not required;
* registration date (Fig. 1; the period filter applies to it): the earliest ``effectiveDateTime`` of the
  patient's registration Observations; without one, the ``end`` of the latest *stopped* imatinib period;
  without that, the day (UTC) the Patient was first stored (its history version 1);
* reason (Tab. 1): the ifp-registration-reason code of a registration Observation's value (the earliest that
  has one); when none has (no registration Observation, or only with ``dataAbsentReason``), the
  ifp-registration-reason code in ``statusReason`` of the latest stopped imatinib period; neither:
  ``not-recorded`` (data contract, ifp-imatinib and ifp-registration; mappings/form-a-columns.md). In
  conformant data the two sources agree;
* age at diagnosis: completed years from ``Patient.birthDate`` to the CML Condition's ``onsetDateTime``;
* imatinib duration: days from the earliest imatinib ``effectivePeriod.start`` to the ``end`` of the latest
  stopped period, in months of 365.25/12 days; daily dose at stop = doseQuantity x frequency / period of
  that period (periodUnit h, d, wk, mo);
* decision: the earliest ifp-decision Observation; Sokal group: interpretation of the earliest sokal-score.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fhir_server.context import RequestContext
from fhir_server.contract import ATC, BASE, CENTER_SYSTEM, DAYS_PER_MONTH, ICD10, NOT_RECORDED, SNOMED
from fhir_server.reports.model import Filters
from fhir_server.reports.terminology import DECISION_SYSTEM, REASON_SYSTEM, ReportCodes
from fhir_server.search.index_layout import param_path
from fhir_server.search.param_types import reference
from fhir_server.storage.documents import REPORT_ROWS
from fhir_server.storage.report_rows import RowDefinition
from fhir_server.storage.store import ResourceStore

CONCEPTS = f"{BASE}/CodeSystem/ifp-concepts"
PHASE_SYSTEM = f"{BASE}/CodeSystem/ifp-disease-phase"
RESPONSE_SYSTEM = f"{BASE}/CodeSystem/ifp-response"
PROSPECTIVE_URL = f"{BASE}/StructureDefinition/prospective-study"
IMATINIB_CODES = ("L01EA01", "L01XE01")  # L01XE01: the pre-2022 ATC code (ConceptMap atc-pre-2022)
DAYS_PER_UNIT = {"h": 1 / 24, "d": 1, "wk": 7, "mo": DAYS_PER_MONTH}
COUNTED = ("sex", "country", "prospective", "reason", "group", "decision", "month")

Expr = Any


# -- expression helpers ------------------------------------------------------------------------------------


def code_in(concept: Expr, system: str) -> Expr:
    """The first code of ``system`` in a CodeableConcept expression (null when none)."""
    matching = {"$filter": {"input": {"$ifNull": ["$$cc.coding", []]}, "as": "c",
                            "cond": {"$eq": ["$$c.system", system]}}}
    return {"$let": {"vars": {"cc": concept},
                     "in": {"$first": {"$map": {"input": matching, "as": "c", "in": "$$c.code"}}}}}


def first(array: Expr) -> Expr:
    """The first element of an array expression, null when missing or empty."""
    return {"$first": {"$ifNull": [array, []]}}


def day(value: Expr) -> Expr:
    """The date part (YYYY-MM-DD, or shorter when partial) of a FHIR date/dateTime string."""
    return {"$cond": [{"$eq": [{"$type": value}, "string"]}, {"$substrBytes": [value, 0, 10]}, None]}


def to_date(value: Expr) -> Expr:
    return {"$dateFromString": {"dateString": value, "format": "%Y-%m-%d", "onError": None, "onNull": None}}


def part(value: Expr, start: int, length: int, default: int | None) -> Expr:
    return {"$convert": {"input": {"$substrBytes": [value, start, length]}, "to": "int", "onError": default,
                         "onNull": default}}


def median(values: Expr) -> Expr:
    """Median of a numeric array: sorted with ``$sortArray``, middle element or mean of the two."""
    return {"$let": {
        "vars": {"v": {"$sortArray": {"input": values, "sortBy": 1}}, "n": {"$size": values}},
        "in": {"$switch": {"branches": [
            {"case": {"$eq": ["$$n", 0]}, "then": None},
            {"case": {"$eq": [{"$mod": ["$$n", 2]}, 1]},
             "then": {"$arrayElemAt": ["$$v", {"$toInt": {"$floor": {"$divide": ["$$n", 2]}}}]}},
        ], "default": {"$divide": [{"$add": [
            {"$arrayElemAt": ["$$v", {"$toInt": {"$subtract": [{"$divide": ["$$n", 2]}, 1]}}]},
            {"$arrayElemAt": ["$$v", {"$toInt": {"$divide": ["$$n", 2]}}]}]}, 2]}}},
    }}


def reference_id(reference: Expr, resource_type: str) -> Expr:
    """The id in a reference expression ``[base/]<resource_type>/id[/_history/n]`` (the version dropped, as in
    the search index); null when the reference is not to ``resource_type``."""
    found = {"$regexFind": {"input": {"$ifNull": [reference, ""]},
                            "regex": f"{resource_type}/([A-Za-z0-9.-]+)(?:/_history/[A-Za-z0-9.-]+)?$"}}
    return first({"$getField": {"field": "captures", "input": found}})


# Records a center withdrew: they never count (Observation.status, observation-status value set).
NOT_MEASURED = ("entered-in-error", "cancelled")


def patient_key() -> Expr:
    """``Patient/<id>`` from ``resource.subject.reference`` (relative or absolute, maybe versioned)."""
    return {"$concat": ["Patient/", reference_id("$resource.subject.reference", "Patient")]}


# -- branches: one small document per source resource ------------------------------------------------------

# The center each source document is stored with (``src``), so that a patient's row knows whether resources of
# another center than its Patient's made it (``foreign``: after a Patient moved; ``run_report_pipeline``).
SOURCE_CENTER = {"src": {"$ifNull": ["$center", None]}}


def _of_patients(ids: Sequence[str] | None) -> list[dict[str, Any]]:
    """A first stage keeping the resources whose ``subject`` is one of the Patients ``ids`` (None: all), read
    from the ``subject`` search index (``sp``: relative references; an absolute one has only its URL there)."""
    if ids is None:
        return []
    tail = "|".join(re.escape(i) for i in ids)
    return [{"$match": {"$or": [
        {reference.path("subject"): {"$in": [f"Patient/{i}" for i in ids]}},
        {param_path("subject", reference.URL): {"$regex": f"Patient/({tail})(/_history/[A-Za-z0-9.-]+)?$"}}]}}]


def _patients(ids: Sequence[str] | None) -> list[dict[str, Any]]:
    chosen = [] if ids is None else [{"$match": {"_id": {"$in": list(ids)}}}]
    prospective = first({"$filter": {"input": {"$ifNull": ["$resource.extension", []]}, "as": "e",
                                     "cond": {"$eq": ["$$e.url", PROSPECTIVE_URL]}}})
    return [*chosen, {"$project": {
        "_id": 0, "pid": {"$concat": ["Patient/", "$_id"]}, "isPatient": {"$literal": True}, **SOURCE_CENTER,
        "sex": {"$ifNull": ["$resource.gender", "unknown"]}, "birth": "$resource.birthDate",
        "org": reference_id("$resource.managingOrganization.reference", "Organization"),
        "prosp": {"$getField": {"field": "valueBoolean", "input": prospective}},
    }}]


# The Observations a row reads (ifp-concepts codes); the others (lab results...) make no row.
ROW_OBSERVATION_CODES = ("registration-reason", "decision-after-imatinib", "sokal-score")


def may_make_a_row(collection: str, document: Mapping[str, Any]) -> bool:
    """False for a stored document that no row stage can keep: an Observation whose ``code`` index values name
    none of :data:`ROW_OBSERVATION_CODES` (:func:`_observations`' first match, on the same ``sp`` values). Such a
    document need not go to :func:`rows_of_documents` (most of a registry Bundle's Observations are lab results:
    two thirds of the literal's bytes, which the driver encodes and mongod parses for nothing)."""
    if collection != "Observation":
        return True
    codes = (document.get("sp") or {}).get("code") or ()
    return any(isinstance(value, Mapping) and value.get("s") == CONCEPTS and value.get("c") in ROW_OBSERVATION_CODES
               for value in codes)


def observation_stages() -> list[dict[str, Any]]:
    """The stages by which a row reads the Observations (of every patient)."""
    stages: list[dict[str, Any]] = _observations(None)["$unionWith"]["pipeline"]
    return stages


def _observations(ids: Sequence[str] | None) -> dict[str, Any]:
    codes = list(ROW_OBSERVATION_CODES)
    when = day("$resource.effectiveDateTime")
    return {"$unionWith": {"coll": "Observation", "pipeline": [
        *_of_patients(ids),
        # The search index values of the same code (``sp``, extracted at write time) let MongoDB read only these
        # Observations from the index, not every lab result; the match on ``resource`` below is the definition.
        {"$match": {"sp.code": {"$elemMatch": {"s": CONCEPTS, "c": {"$in": codes}}}}},
        {"$match": {"resource.status": {"$nin": list(NOT_MEASURED)}}},
        {"$match": {"resource.code.coding": {"$elemMatch": {"system": CONCEPTS, "code": {"$in": codes}}}}},
        {"$set": {"concept": code_in("$resource.code", CONCEPTS)}},
        {"$project": {
            "_id": 0, "pid": patient_key(), **SOURCE_CENTER, **_registration(when),
            "dec": {"$cond": [{"$eq": ["$concept", "decision-after-imatinib"]},
                              {"e": when, "c": code_in("$resource.valueCodeableConcept", DECISION_SYSTEM)},
                              "$$REMOVE"]},
            "sokal": {"$cond": [{"$eq": ["$concept", "sokal-score"]},
                                {"e": when, "c": code_in(first("$resource.interpretation"), RESPONSE_SYSTEM)},
                                "$$REMOVE"]},
        }},
    ]}}


def _registration(when: Expr) -> dict[str, Expr]:
    """A registration Observation's date (``regDate``) and, when its value records one, its reason with the
    date (``regReason``: ``{e, c}``, so that the earliest recorded reason wins); nothing for other codes."""
    registration = {"$eq": ["$concept", "registration-reason"]}
    recorded = {"$let": {"vars": {"c": code_in("$resource.valueCodeableConcept", REASON_SYSTEM)},
                         "in": {"$cond": [{"$eq": [{"$type": "$$c"}, "string"]}, {"e": when, "c": "$$c"}, None]}}}
    return {"regDate": {"$cond": [registration, when, "$$REMOVE"]},
            "regReason": {"$cond": [registration, recorded, "$$REMOVE"]}}


def _conditions(ids: Sequence[str] | None) -> dict[str, Any]:
    cml = {"$or": [{"resource.code.coding": {"$elemMatch": {"system": SNOMED, "code": "92818009"}}},
                   {"resource.code.coding": {"$elemMatch": {"system": ICD10, "code": "C92.1"}}}]}
    return {"$unionWith": {"coll": "Condition", "pipeline": [
        *_of_patients(ids),
        {"$match": {"resource.verificationStatus.coding.code": {"$ne": "entered-in-error"}}},
        {"$match": cml},
        {"$project": {"_id": 0, "pid": patient_key(), **SOURCE_CENTER, "dx": {
            "e": day("$resource.onsetDateTime"),
            "p": code_in({"$getField": {"field": "summary", "input": first("$resource.stage")}}, PHASE_SYSTEM)}}},
    ]}}


def _daily_dose() -> Expr:
    """mg/day of the Dosage bound to ``$$d``: doseQuantity x frequency / (period in days)."""
    return {"$let": {
        "vars": {"dose": {"$getField": {"field": "doseQuantity", "input": first("$$d.doseAndRate")}},
                 "repeat": "$$d.timing.repeat"},
        "in": {"$divide": [
            {"$multiply": [{"$toDouble": "$$dose.value"}, {"$ifNull": ["$$repeat.frequency", 1]}]},
            {"$multiply": [{"$toDouble": {"$ifNull": ["$$repeat.period", 1]}},
                           {"$switch": {"branches": [
                               {"case": {"$eq": [{"$ifNull": ["$$repeat.periodUnit", "d"]}, unit]}, "then": days}
                               for unit, days in DAYS_PER_UNIT.items()], "default": None}}]}]},
    }}


def _status_reason() -> Expr:
    """The ifp-registration-reason code in the statusReason of a stopped period (profile ifp-imatinib: a
    coding next to the SNOMED CT stop reason), whichever statusReason carries it; null when none does."""
    codes = {"$map": {"input": {"$ifNull": ["$resource.statusReason", []]}, "as": "r",
                      "in": code_in("$$r", REASON_SYSTEM)}}
    return first({"$filter": {"input": codes, "as": "c", "cond": {"$eq": [{"$type": "$$c"}, "string"]}}})


def _imatinib(ids: Sequence[str] | None) -> dict[str, Any]:
    dose = {"$let": {"vars": {"d": first("$resource.dosage")}, "in": _daily_dose()}}
    stopped = {"e": day("$resource.effectivePeriod.end"), "r": _status_reason(), "d": dose}
    return {"$unionWith": {"coll": "MedicationStatement", "pipeline": [
        *_of_patients(ids),
        {"$match": {"resource.status": {"$ne": "entered-in-error"}}},
        {"$match": {"resource.medicationCodeableConcept.coding": {
            "$elemMatch": {"system": ATC, "code": {"$in": list(IMATINIB_CODES)}}}}},
        {"$project": {"_id": 0, "pid": patient_key(), **SOURCE_CENTER,
                      "imaStart": day("$resource.effectivePeriod.start"),
                      "stop": {"$cond": [{"$eq": ["$resource.status", "stopped"]}, stopped, "$$REMOVE"]}}},
    ]}}


# -- one row per patient -----------------------------------------------------------------------------------


def _per_patient() -> list[dict[str, Any]]:
    """One row per stored Patient (``report_rows``: what is kept per patient; ``_id`` ``Patient/<id>``)."""
    return [
        {"$match": {"pid": {"$ne": None}}},
        {"$group": {
            "_id": "$pid", "isPatient": {"$max": "$isPatient"}, "sex": {"$max": "$sex"},
            "birth": {"$max": "$birth"}, "org": {"$max": "$org"}, "prosp": {"$max": "$prosp"},
            "regDate": {"$min": "$regDate"}, "regReason": {"$min": "$regReason"}, "dec": {"$min": "$dec"},
            "sokal": {"$min": "$sokal"}, "dx": {"$min": "$dx"}, "imaStart": {"$min": "$imaStart"},
            "stop": {"$max": "$stop"},  # the latest stopped period (by end date)
            "firstStored": {"$min": "$firstStored"},  # when the Patient was first stored (history version 1)
            "center": {"$max": {"$cond": ["$isPatient", "$src", "$$REMOVE"]}},  # the access filter reads the
            "sources": {"$addToSet": "$src"},  # row as its Patient; the centers of what made it
        }},
        {"$match": {"isPatient": True}},  # every stored Patient is registered; other rows are orphans
        {"$set": {"foreign": {"$anyElementTrue": [{"$map": {
            "input": "$sources", "in": {"$not": [{"$in": ["$$this", ["$center", None]]}]}}}]}}},
        {"$unset": "sources"},
    ]


def _registration_date() -> list[dict[str, Any]]:
    """``reg``: the registration Observation's date, else the end of the latest stopped imatinib period, else
    the day (UTC) the Patient was first stored (``firstStored``, brought in from history for every patient by
    ``ResourceStore.first_versions``: one index scan, cheaper than a history lookup for each patient)."""
    first_stored = {"$dateToString": {"date": "$firstStored", "format": "%Y-%m-%d", "timezone": "UTC"}}
    return [
        {"$set": {"reg": {"$ifNull": ["$regDate", "$stop.e", first_stored]}}},
        {"$unset": ["regDate", "firstStored"]},
    ]


def _match_filters(filters: Filters) -> list[dict[str, Any]]:
    """Stages applying the filters that do not need the center (period, cohort)."""
    query: dict[str, Any] = {}
    bounds: dict[str, str] = {}
    if filters.period_start:
        bounds["$gte"] = filters.period_start.isoformat()
    if filters.period_end:
        bounds["$lte"] = filters.period_end.isoformat()  # "reg" is the date part: the end day is included
    if bounds:
        query["reg"] = bounds
    if filters.patient_ids is not None:
        query["_id"] = {"$in": sorted(f"Patient/{pid}" for pid in filters.patient_ids)}
    return [{"$match": query}] if query else []


def _organizations() -> list[dict[str, Any]]:
    """Each Organization (on ``Organization``) as ``{_id, country, code}``: its country and center code."""
    center_code = first({"$map": {"input": {"$filter": {
        "input": {"$ifNull": ["$resource.identifier", []]}, "as": "i",
        "cond": {"$eq": ["$$i.system", CENTER_SYSTEM]}}}, "as": "i", "in": "$$i.value"}})
    return [{"$project": {"_id": 1, "country": first("$resource.address.country"), "code": center_code}}]


def _center(filters: Filters, organizations: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """``country`` and ``centerCode`` of each patient's ``org``, and the filters on them. ``organizations``:
    those the caller may read (:func:`_organizations`, read before), picked from as constants; None: read here.

    Every Organization the caller may read, once: an uncorrelated $lookup, which MongoDB runs once and caches,
    where a join on ``org`` ran a sub-query per patient (the report's largest cost at scale); the registry has
    tens of centers, each patient's is picked from them by its id. The $lookup still copies that list into
    every patient's document (half the report's time from the rows at 20,000 patients): the report from the
    rows reads the Organizations first and picks from constants."""
    if organizations is None:
        listed: Expr = "$centers._id"
        found: Expr = "$centers"
        stages: list[dict[str, Any]] = [
            {"$lookup": {"from": "Organization", "as": "centers", "pipeline": _organizations()}}]
    else:
        listed = {"$literal": [org["_id"] for org in organizations]}
        found = {"$literal": organizations}
        stages = []
    at = {"$indexOfArray": [listed, "$org"]}
    stages += [
        {"$set": {"center": {"$let": {"vars": {"i": at}, "in": {
            "$cond": [{"$gte": ["$$i", 0]}, {"$arrayElemAt": [found, "$$i"]}, None]}}}}},
        *([{"$unset": "centers"}] if organizations is None else []),
        {"$set": {"country": {"$ifNull": ["$center.country", "unknown"]},
                  "centerCode": {"$ifNull": ["$center.code", "unknown"]}}},
    ]
    query: dict[str, Any] = {}
    if filters.countries:
        query["country"] = {"$in": sorted(filters.countries)}
    if filters.centers:
        query["centerCode"] = {"$in": sorted(filters.centers)}
    return stages + ([{"$match": query}] if query else [])


def _age() -> Expr:
    onset = "$dx.e"
    years = {"$subtract": [part(onset, 0, 4, None), part("$birth", 0, 4, None)]}
    before = {"$lt": [{"$add": [{"$multiply": [part(onset, 5, 2, 1), 100]}, part(onset, 8, 2, 1)]},
                      {"$add": [{"$multiply": [part("$birth", 5, 2, 1), 100]}, part("$birth", 8, 2, 1)]}]}
    return {"$cond": [{"$and": [{"$ne": [onset, None]}, {"$ne": ["$birth", None]}]},
                      {"$subtract": [years, {"$cond": [before, 1, 0]}]}, None]}


def _derived() -> list[dict[str, Any]]:
    """What each patient's row says (the fields the sections count), from its sources' fields."""
    reason = {"$ifNull": ["$regReason", "$stop.r", NOT_RECORDED]}
    days = {"$dateDiff": {"startDate": to_date("$imaStart"), "endDate": to_date("$stop.e"), "unit": "day"}}
    return [
        {"$set": {"reason": reason, "age": _age(), "month": _month("$reg"),
                  "decision": {"$ifNull": ["$dec.c", NOT_RECORDED]},
                  "phase": {"$ifNull": ["$dx.p", "unknown"]}, "sokalGroup": {"$ifNull": ["$sokal.c", "unknown"]},
                  "prospective": {"$switch": {"branches": [
                      {"case": {"$eq": ["$prosp", True]}, "then": "included"},
                      {"case": {"$eq": ["$prosp", False]}, "then": "never-included"}], "default": "unknown"}},
                  "dose": "$stop.d",
                  "months": {"$cond": [{"$and": ["$imaStart", "$stop.e"]},
                                       {"$divide": [days, DAYS_PER_MONTH]}, None]}}},
        {"$project": {field: 1 for field in ROW_FIELDS}},
    ]


# What a row keeps (``report_rows``): the fields the filters and sections read, the Patient's center and org.
ROW_FIELDS = ("center", "foreign", "org", "sex", "reg", "reason", "age", "month", "decision", "phase", "sokalGroup",
              "prospective", "dose", "months")


def _group(codes: ReportCodes) -> list[dict[str, Any]]:
    """The failure/toxicity group of the reason (the code system's hierarchy, read at report time)."""
    return [{"$set": {"group": {"$switch": {"branches": [
        {"case": {"$in": ["$reason", codes.leaves_of(g) or [g]]}, "then": g} for g in codes.groups()],
        "default": None}}}}]


# -- sections ----------------------------------------------------------------------------------------------


def _month(value: Expr) -> Expr:
    """``YYYY-MM`` of a registration date; None for a year-only date (it has no month to be counted in)."""
    return {"$cond": [{"$gte": [{"$strLenBytes": {"$ifNull": [value, ""]}}, 7]},
                      {"$substrBytes": [value, 0, 7]}, None]}


def _count_by(field: Expr) -> list[dict[str, Any]]:
    return [{"$group": {"_id": field, "n": {"$sum": 1}}}, {"$sort": {"_id": 1}}]


def _stats(field: str, by: Expr = None) -> list[dict[str, Any]]:
    return [
        {"$match": {field: {"$type": "number"}}},
        {"$group": {"_id": by, "v": {"$push": f"${field}"}}},
        {"$project": {"median": median("$v"), "min": {"$min": "$v"}, "max": {"$max": "$v"}, "n": {"$size": "$v"}}},
        {"$sort": {"_id": 1}},
    ]


def _facets() -> dict[str, Any]:
    in_group = {"$match": {"group": {"$ne": None}}}
    facets: dict[str, Any] = {name: _count_by(f"${name}") for name in COUNTED}
    facets.update({
        "total": [{"$count": "n"}],
        "regRange": [{"$group": {"_id": None, "lo": {"$min": "$reg"}, "hi": {"$max": "$reg"}}}],
        "age": _stats("age"),
        "months": [in_group, *_stats("months", "$group")],
        "dose": [in_group, *_stats("dose", "$group")],
        "phase": [in_group, *_count_by({"g": "$group", "v": "$phase"})],
        "sokal": [in_group, *_count_by({"g": "$group", "v": "$sokalGroup"})],
    })
    return {"$facet": facets}


def _unions(ids: Sequence[str] | None) -> list[dict[str, Any]]:
    """The ``$unionWith`` stages adding the other sources to the Patients' documents."""
    first_stored = ResourceStore.first_versions("Patient", "pid", "firstStored", ids)
    first_stored["$unionWith"]["pipeline"][-1]["$project"].update(SOURCE_CENTER)
    return [_observations(ids), _conditions(ids), _imatinib(ids), first_stored]


def row_pipeline(ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The rows of the Patients ``ids`` (None: all), to run on ``Patient``: what ``report_rows`` keeps
    (``storage/report_rows.py``)."""
    return [*_patients(ids), *_unions(ids), *_per_patient(), *_per_row()]


def _row_sources(ids: Sequence[str]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(collection, stages) of each source of the rows of ``ids``: the Patients, then :func:`_unions`'."""
    sources = [("Patient", _patients(ids))]
    return sources + [(union["$unionWith"]["coll"], union["$unionWith"]["pipeline"]) for union in _unions(ids)]


def _rows_of_sources(count: int) -> list[dict[str, Any]]:
    """From one document holding each source's documents in ``s0``... ``s<count-1>`` to the rows."""
    return [
        {"$project": {"doc": {"$concatArrays": [f"$s{n}" for n in range(count)]}}},
        {"$unwind": "$doc"},
        {"$replaceWith": "$doc"},
        *_per_patient(), *_per_row(),
    ]


def rows_in_transaction(ids: Sequence[str]) -> list[dict[str, Any]]:
    """:func:`row_pipeline` of ``ids`` as a database-level pipeline, which a transaction may run: it refuses
    ``$unionWith``, not ``$lookup``. One empty ``$documents`` document looks up each source (uncorrelated: each
    runs once), whose documents are then unwound and grouped as :func:`row_pipeline` groups them."""
    sources = _row_sources(ids)
    return [
        {"$documents": [{}]},
        *({"$lookup": {"from": source, "pipeline": stages, "as": f"s{n}"}}
          for n, (source, stages) in enumerate(sources)),
        *_rows_of_sources(len(sources)),
    ]


def rows_of_documents(ids: Sequence[str], documents: Sequence[tuple[str, Any]]) -> list[dict[str, Any]]:
    """:func:`rows_in_transaction` of ``ids`` made from ``documents`` ((collection, stored document) pairs, the
    deleted ones left out) instead of from the collections: for Patients whose every source is among them (a
    Patient created with an id of the server's choosing in this transaction, which nothing stored before can
    name). Each source's own stages run on its collection's documents, in a ``$facet``: the same definitions,
    and none of the five ``$lookup``s whose fixed cost (0.6-1.3 ms of mongod each) was most of a Bundle's row
    refresh. The documents go in as a ``$literal``: a string value starting with ``$`` stays a string."""
    sources = _row_sources(ids)
    return [
        {"$documents": {"$literal": [{"c": collection, "d": document} for collection, document in documents]}},
        {"$facet": {f"s{n}": [{"$match": {"c": source}}, {"$replaceWith": "$d"}, *stages]
                    for n, (source, stages) in enumerate(sources)}},
        *_rows_of_sources(len(sources)),
    ]


def _per_row() -> list[dict[str, Any]]:
    """From the grouped sources to what a row keeps (:data:`ROW_FIELDS`)."""
    return [{"$set": {"regReason": "$regReason.c"}}, *_registration_date(), *_derived()]


def rows_report_pipeline(filters: Filters, codes: ReportCodes,
                         organizations: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The report from rows, to run on ``report_rows`` with ``ResourceStore.aggregate`` (``organizations``: see
    :func:`_center`)."""
    return [*_match_filters(filters), *_center(filters, organizations), *_group(codes), _facets()]


def report_pipeline(filters: Filters, codes: ReportCodes) -> list[dict[str, Any]]:
    """The report computed from the source resources, to run on ``Patient`` (the rows made at read time):
    the oracle the kept rows are tested against, and what a rebuild computes."""
    return [*row_pipeline(), *rows_report_pipeline(filters, codes)]


ROW_DEFINITION = RowDefinition(
    # names the rows' shape and definitions: rows stored by another definition are rebuilt at start
    format=hashlib.sha256(json.dumps(row_pipeline(), sort_keys=True).encode()).hexdigest()[:16],
    sources=frozenset({"Observation", "Condition", "MedicationStatement"}),
    every_row=row_pipeline,
    rows_of=rows_in_transaction,
    rows_of_documents=rows_of_documents,
    may_make_a_row=may_make_a_row,
)


async def run_report_pipeline(ctx: RequestContext, store: ResourceStore, filters: Filters,
                              codes: ReportCodes) -> dict[str, Any]:
    """The ``$facet`` result: one document with a list per section, from the rows kept at write time.

    A row made with resources of another center than its Patient's (``foreign``: the Patient moved, its other
    resources keep their center until written again, ``storage/centers.py``) is made again here from what
    ``ctx`` may read, as the report from the source resources would: no caller counts what it may not read."""
    if not store.serves_report_rows(ctx):  # no rows kept, or an access policy the rows cannot apply
        rows = await store.aggregate(ctx, "Patient", report_pipeline(filters, codes))
        return rows[0] if rows else {}
    foreign = [row["_id"].removeprefix("Patient/") for row in await store.aggregate(
        ctx, REPORT_ROWS, [{"$match": {"foreign": True}}, {"$project": {"_id": 1}}])]
    again: list[dict[str, Any]] = []
    if foreign:
        again = [{"$match": {"foreign": {"$ne": True}}},
                 {"$unionWith": {"coll": "Patient", "pipeline": row_pipeline(foreign)}}]
    organizations = await store.aggregate(ctx, "Organization", _organizations())
    rows = await store.aggregate(ctx, REPORT_ROWS, [*again, *rows_report_pipeline(filters, codes, organizations)])
    return rows[0] if rows else {}
