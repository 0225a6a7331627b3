"""Risk scores of a registry patient: ``Patient/[id]/$risk-scores`` and the check of submitted scores.

Data contract, "Risk scores": Sokal, Hasford (Euro), EUTOS and ELTS from the baseline values at diagnosis
(formulas in :mod:`fhir_server.registry.risk_scores`). Inputs, from the patient's resources:

* age at diagnosis: completed years from ``Patient.birthDate`` (a partial date counts from its first day, as
  the report does) to the onset of the ``ifp-cml-diagnosis`` Condition (SNOMED 92818009 / ICD-10 C92.1);
* ``ifp-baseline-lab`` Observations: spleen (``ifp-concepts#spleen-size`` or LOINC 32489-7, cm), platelets
  (LOINC 777-3, 10*9/L; 10*3/uL is the same, /uL is converted), blasts 26446-5, eosinophils 713-8,
  basophils 706-2 (%). When several Observations give one input, the one closest to the date of diagnosis is
  used. Observations ``entered-in-error`` or ``cancelled`` are ignored.

``GET|POST [base]/Patient/[id]/$risk-scores`` (a custom operation, https://hl7.org/fhir/R4/operations.html)
returns a ``collection`` Bundle of ``ifp-risk-score`` Observations (``derivedFrom`` the inputs), plus an
OperationOutcome entry naming inputs that are missing; nothing is stored unless ``persist=true`` is POSTed:
then each score is written by conditional update on the identifier ``{base}/sid/computed|[id]/[score]``
(so recomputing replaces, never duplicates) through the ordinary write path.

The write check: a submitted ``ifp-risk-score`` Observation whose value differs from the computed one by more
than its own rounding (half a unit of its last decimal place), or whose interpretation names another risk
group, gets a **warning** in the write's OperationOutcome (never a rejection: a center may know better, e.g.
values not submitted). Inputs are read from the same transaction -- the other entries of the Bundle first,
then the store.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any
from weakref import WeakKeyDictionary

from fhir_server.context import RequestContext
from fhir_server.errors import InvalidRequest, Issue, NotFound
from fhir_server.interactions.bundles import with_entries
from fhir_server.interactions.enforcement import Resolver
from fhir_server.interactions.search import compiled_filter
from fhir_server.interactions.unit_of_work import UnitOfWork, run_in_transaction
from fhir_server.interactions.update import conditional_update
from fhir_server.json_types import Json
from fhir_server.operations import OperationRegistry, OperationRequest, OperationResponse, OperationSpec
from fhir_server.registry.risk_scores import RISK_CODE_SYSTEM, RiskScore, age_in_years, all_scores
from fhir_server.search.index_layout import param_path
from fhir_server.services import Services

BASE = "https://cml-registry.eu/fhir"
CONCEPTS = f"{BASE}/CodeSystem/ifp-concepts"
PROFILE = f"{BASE}/StructureDefinition/ifp-risk-score"
COMPUTED = f"{BASE}/sid/computed"
LOINC, SNOMED, ICD10 = "http://loinc.org", "http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10"
SCORE_NAMES = {"sokal-score": "sokal", "hasford-score": "hasford", "eutos-score": "eutos", "elts-score": "elts"}
DISPLAYS = {"sokal": "Sokal score", "hasford": "Hasford (Euro) score", "eutos": "EUTOS score",
            "elts": "ELTS score"}
INPUT_CODES: dict[tuple[str, str], str] = {
    (CONCEPTS, "spleen-size"): "spleen", (LOINC, "32489-7"): "spleen", (LOINC, "777-3"): "platelets",
    (LOINC, "26446-5"): "blasts", (LOINC, "713-8"): "eosinophils", (LOINC, "706-2"): "basophils",
}
CML_CODES = {(SNOMED, "92818009"), (ICD10, "C92.1")}
# accepted UCUM codes per input, with the factor to the contract's unit
UNITS: dict[str, dict[str, Decimal]] = {
    "spleen": {"cm": Decimal(1), "mm": Decimal("0.1")},
    "platelets": {"10*9/L": Decimal(1), "10*3/uL": Decimal(1), "10^9/L": Decimal(1), "/uL": Decimal("0.001")},
    "blasts": {"%": Decimal(1)}, "eosinophils": {"%": Decimal(1)}, "basophils": {"%": Decimal(1)},
}
IGNORED_STATUS = {"entered-in-error", "cancelled"}


# -- inputs (pure) ---------------------------------------------------------------------------------------


@dataclass
class Baseline:
    """The score inputs found for one patient, and where they come from."""

    inputs: dict[str, Decimal] = field(default_factory=dict)  # age + the five lab values
    diagnosis: date | None = None
    sources: list[str] = field(default_factory=list)  # references of the Observations used
    notes: list[str] = field(default_factory=list)

    def scores(self) -> dict[str, RiskScore]:
        return all_scores(self.inputs)


def _first_day(text: str) -> date | None:
    """The first day of a FHIR (partial) date or dateTime; None if unreadable."""
    try:
        parts = [int(p) for p in text[:10].split("-")]
        return date(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)
    except (ValueError, IndexError):
        return None


def _codings(concept: Any) -> Iterable[tuple[str, str]]:
    for coding in (concept or {}).get("coding") or []:
        if isinstance(coding, dict):
            yield coding.get("system") or "", coding.get("code") or ""


def _diagnosis_date(conditions: Iterable[Json]) -> date | None:
    onsets = [d for c in conditions if any(k in CML_CODES for k in _codings(c.get("code")))
              and (d := _first_day(str(c.get("onsetDateTime") or ""))) is not None]
    return min(onsets) if onsets else None


def _lab_value(obs: Json, name: str, notes: list[str]) -> Decimal | None:
    quantity = obs.get("valueQuantity")
    if not isinstance(quantity, dict) or quantity.get("value") is None:
        return None
    try:
        value = Decimal(str(quantity["value"]))
    except InvalidOperation:
        return None
    unit = quantity.get("code") or quantity.get("unit")
    if unit is None:
        return value
    factor = UNITS[name].get(str(unit))
    if factor is None:
        notes.append(f"{name}: unit '{unit}' of Observation/{obs.get('id')} is not one the scores use")
        return None
    return value * factor


def baseline_of(patient: Json, conditions: Iterable[Json], observations: Iterable[Json]) -> Baseline:
    """The inputs of the scores from a patient's resources (pure; see the module docstring)."""
    out = Baseline(diagnosis=_diagnosis_date(conditions))
    birth = _first_day(str(patient.get("birthDate") or ""))
    if birth is not None and out.diagnosis is not None:
        out.inputs["age"] = Decimal(age_in_years(birth, out.diagnosis))
    elif out.diagnosis is None:
        out.notes.append("no ifp-cml-diagnosis Condition with an onset: age at diagnosis unknown")
    else:
        out.notes.append("Patient.birthDate missing: age at diagnosis unknown")
    best: dict[str, tuple[int, Decimal, str]] = {}
    for obs in observations:
        if obs.get("status") in IGNORED_STATUS:
            continue
        name = next((INPUT_CODES[k] for k in _codings(obs.get("code")) if k in INPUT_CODES), None)
        if name is None:
            continue
        value = _lab_value(obs, name, out.notes)
        if value is None:
            continue
        when = _first_day(str(obs.get("effectiveDateTime") or ""))
        distance = abs((when - out.diagnosis).days) if when and out.diagnosis else 10**6
        if name not in best or distance <= best[name][0]:
            best[name] = (distance, value, f"Observation/{obs.get('id')}")
    for name, (_, value, reference) in sorted(best.items()):
        out.inputs[name] = value
        out.sources.append(reference)
    return out


def rounded(score: RiskScore) -> Decimal:
    """The value published for a score: four decimal places (the contract's thresholds have four)."""
    return Decimal(repr(score.value)).quantize(Decimal("0.0001"))


def score_observation(patient_id: str, score: RiskScore, baseline: Baseline) -> Json:
    """An ``ifp-risk-score`` Observation of a computed score."""
    obs: Json = {
        "resourceType": "Observation", "meta": {"profile": [PROFILE]},
        "identifier": [{"system": COMPUTED, "value": f"{patient_id}/{score.name}"}],
        "status": "final",
        "code": {"coding": [{"system": CONCEPTS, "code": f"{score.name}-score", "display": DISPLAYS[score.name]}]},
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    if baseline.diagnosis is not None:
        obs["effectiveDateTime"] = baseline.diagnosis.isoformat()
    obs["valueQuantity"] = {"value": rounded(score)}
    obs["interpretation"] = [{"coding": [{"system": RISK_CODE_SYSTEM, "code": score.group}]}]
    if baseline.sources:
        obs["derivedFrom"] = [{"reference": r} for r in baseline.sources]
    return obs


def disagreement(submitted: Json, computed: RiskScore) -> list[Issue]:
    """Warnings when a submitted score differs from ``computed`` by more than its rounding, or in group."""
    issues: list[Issue] = []
    value = (submitted.get("valueQuantity") or {}).get("value")
    if value is not None:
        try:
            sent = Decimal(str(value))
        except InvalidOperation:
            return issues
        exponent = sent.as_tuple().exponent
        tolerance = Decimal(5).scaleb(int(exponent) - 1) if isinstance(exponent, int) else Decimal(0)
        if abs(sent - Decimal(repr(computed.value))) > tolerance + Decimal("1e-9"):
            issues.append(Issue(
                "warning", "business-rule",
                f"Observation.valueQuantity.value: the submitted {computed.name} score {sent} differs from "
                f"{rounded(computed)} computed from the patient's baseline data by more than rounding",
                ("Observation.valueQuantity.value",)))
    groups = {code for system, code in _codings((submitted.get("interpretation") or [{}])[0])
              if system == RISK_CODE_SYSTEM}
    if groups and computed.group not in groups:
        issues.append(Issue(
            "warning", "business-rule",
            f"Observation.interpretation[0]: the submitted {computed.name} risk group {', '.join(sorted(groups))} "
            f"differs from '{computed.group}' computed from the patient's baseline data",
            ("Observation.interpretation[0]",)))
    return issues


# -- reading the patient's data ---------------------------------------------------------------------------


def score_name(resource: Json) -> str | None:
    if resource.get("resourceType") != "Observation":
        return None
    return next((SCORE_NAMES[c] for s, c in _codings(resource.get("code")) if s == CONCEPTS and c in SCORE_NAMES),
                None)


_STORED: WeakKeyDictionary[UnitOfWork, dict[str, tuple[list[Json], list[Json]]]] = WeakKeyDictionary()
_SUBJECT_REFERENCE = f"{param_path('subject')}.r"  # the ``Type/id`` values the ``subject`` search matched


async def _stored(ctx: RequestContext, services: Services, patient_id: str, session: Any = None) -> tuple[
        list[Json], list[Json]]:
    """The patient's stored Conditions and Observations (search index on ``subject``)."""
    return (await _stored_of_many(ctx, services, [patient_id], session))[patient_id]


async def _stored_of_many(ctx: RequestContext, services: Services, patient_ids: Iterable[str],
                          session: Any = None) -> dict[str, tuple[list[Json], list[Json]]]:
    """:func:`_stored` of several patients with one query per type (``subject=Patient/a,Patient/b``), each
    document given to the patients its ``subject`` entries name."""
    wanted = {f"Patient/{p}": p for p in patient_ids}
    found: dict[str, tuple[list[Json], list[Json]]] = {p: ([], []) for p in wanted.values()}
    for position, kind in enumerate(("Condition", "Observation")):
        query = await compiled_filter(ctx, services, kind, [("subject", ",".join(sorted(wanted)))], session)
        docs = await services.store.find(ctx, kind, query, projection={"resource": 1, _SUBJECT_REFERENCE: 1},
                                         session=session)
        for doc in docs:
            entries = (doc.get("sp") or {}).get("subject") or []
            for patient in {wanted[e["r"]] for e in entries if isinstance(e, dict) and e.get("r") in wanted}:
                found[patient][position].append(doc["resource"])
    return found


def _patients_to_check(uow: UnitOfWork) -> set[str]:
    """The patients whose submitted risk scores this unit of work will check: those of the score Observations
    it writes or is about to (a transaction's announced entries, a bulk load's batch)."""
    out: set[str] = set()
    for resource in [*uow.pending_resources().values(), *uow.upcoming]:
        if isinstance(resource, dict) and score_name(resource) is not None:
            kind, _, patient_id = str((resource.get("subject") or {}).get("reference") or "").partition("/")
            if kind == "Patient" and patient_id and "/" not in patient_id:
                out.add(patient_id)
    return out


async def _stored_for_uow(uow: UnitOfWork, patient_id: str) -> tuple[list[Json], list[Json]]:
    """The stored Conditions and Observations of ``patient_id`` as of this unit of work's transaction, read
    once per unit of work together with those of every other patient it will check (a bulk load's batch holds
    a dozen: one query per type, not two per patient). A patient this unit of work creates has nothing stored."""
    cache = _STORED.setdefault(uow, {})
    if patient_id not in cache:
        wanted = {p for p in _patients_to_check(uow) | {patient_id}
                  if p not in cache and not uow.creates(f"Patient/{p}")}
        cache.update(await _stored_of_many(uow.ctx, uow.services, wanted, uow.session) if wanted else {})
        cache.setdefault(patient_id, ([], []))
    return cache[patient_id]


async def _uow_baseline(uow: UnitOfWork, patient_id: str) -> Baseline | None:
    reference = f"Patient/{patient_id}"
    patient = uow.pending_resource(reference)
    if patient is None:
        current = await uow.current("Patient", patient_id)
        patient = current.resource if current is not None and not current.deleted else None
    if patient is None:
        return None
    conditions, observations = await _stored_for_uow(uow, patient_id)
    merged: dict[str, dict[str, Json]] = {"Condition": {}, "Observation": {}}
    for kind, stored in (("Condition", conditions), ("Observation", observations)):
        for r in stored:
            ident = str(r.get("id"))
            # what this unit of work writes or deletes replaces the stored version (it may name another patient)
            if not uow.touched(kind, ident) and uow.pending_resource(f"{kind}/{ident}") is None:
                merged[kind][f"{kind}/{ident}"] = r
    # staged resources, and a transaction's announced later entries
    for ref, r in uow.pending_about(reference).items():
        kind = ref.split("/", 1)[0]
        if kind in merged:
            merged[kind][ref] = r
    return baseline_of(patient, merged["Condition"].values(), merged["Observation"].values())


async def check_submitted_score(uow: UnitOfWork, resource: Json, resolve: Resolver) -> list[Issue]:
    """Write check: warn when a submitted risk score disagrees with the one computed from baseline data."""
    name = score_name(resource)
    if name is None:
        return []
    reference = (resource.get("subject") or {}).get("reference") or ""
    kind, _, patient_id = reference.partition("/")
    if kind != "Patient" or not patient_id or "/" in patient_id:
        return []
    baseline = await _uow_baseline(uow, patient_id)
    computed = baseline.scores().get(name) if baseline is not None else None
    return disagreement(resource, computed) if computed is not None else []


# -- the operation ---------------------------------------------------------------------------------------


async def risk_scores(ctx: RequestContext, services: Services, op: OperationRequest) -> OperationResponse:
    """``Patient/[id]/$risk-scores``: the computed scores as a collection Bundle (stored if ``persist``)."""
    patient_id = op.resource_id
    assert patient_id is not None
    persist = op.param("persist")
    if persist not in (None, "true", "false", "True", "False"):
        raise InvalidRequest("persist must be true or false", code="value", expression=("persist",))
    persist_it = persist in ("true", "True")
    if persist_it and op.method != "POST":
        raise InvalidRequest("persist=true stores Observations: use POST", code="invalid")
    current = await services.store.current(ctx, "Patient", patient_id)
    if current is None or current.deleted or current.resource is None:
        raise NotFound(f"Patient/{patient_id} is not known")
    conditions, observations = await _stored(ctx, services, patient_id)
    baseline = baseline_of(current.resource, conditions, observations)
    scores = baseline.scores()
    resources = [score_observation(patient_id, s, baseline) for s in scores.values()]
    if persist_it and resources:
        resources = await _persist(ctx, services, resources)
    entries: list[Json] = []
    for r in resources:
        url = f"{ctx.base_url}/Observation/{r['id']}" if "id" in r else f"urn:uuid:{uuid.uuid4()}"
        entries.append({"fullUrl": url, "resource": r})
    missing = [s for s in DISPLAYS if s not in scores]
    if missing or baseline.notes:
        notes = [*baseline.notes]
        if missing:
            absent = sorted({"age", "spleen", "platelets", "blasts", "eosinophils", "basophils"}
                            - set(baseline.inputs))
            notes.append(f"not computed: {', '.join(missing)} (missing inputs: {', '.join(absent) or 'none'})")
        entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "information", "code": "incomplete", "diagnostics": n} for n in notes]}})
    return OperationResponse(200, with_entries({"resourceType": "Bundle", "type": "collection"}, entries))


async def _persist(ctx: RequestContext, services: Services, resources: list[Json]) -> list[Json]:
    async def work(uow: UnitOfWork) -> list[Any]:
        results = []
        for r in resources:
            criteria = f"identifier={COMPUTED}|{r['identifier'][0]['value']}"
            results.append(await conditional_update(uow, "Observation", criteria, r))
        return results

    results = await run_in_transaction(ctx, services, work)
    return [dict(r.resource) for r in results]


def register(registry: OperationRegistry) -> None:
    """``$risk-scores`` on Patient instances, and the check of submitted scores on every write."""
    registry.register(OperationSpec(
        "risk-scores", risk_scores, frozenset({"instance"}), types=frozenset({"Patient"}),
        methods=frozenset({"GET", "POST"}),
        documentation="Sokal, Hasford, EUTOS and ELTS scores computed from the patient's baseline data "
                      "(ifp-risk-score Observations; POST persist=true stores them)"))
