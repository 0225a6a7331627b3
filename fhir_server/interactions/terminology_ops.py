"""Terminology operations over HTTP (https://hl7.org/fhir/R4/terminology-service.html).

* ``CodeSystem/$lookup`` (https://hl7.org/fhir/R4/codesystem-operation-lookup.html): system, code, version,
  coding, property -> Parameters name, version, display, designation, property (parent/child, definition and
  the concept's properties);
* ``CodeSystem/$subsumes`` (https://hl7.org/fhir/R4/codesystem-operation-subsumes.html): system, codeA, codeB,
  version, codingA, codingB -> Parameters outcome;
* ``CodeSystem/$validate-code`` (https://hl7.org/fhir/R4/codesystem-operation-validate-code.html): url, code,
  version, display, coding;
* ``ValueSet/$expand`` (https://hl7.org/fhir/R4/valueset-operation-expand.html): url, valueSetVersion, filter,
  count, offset -> the ValueSet with its expansion (extensional includes and ``is-a``/``descendent-of``
  filters are evaluated by :class:`~fhir_server.terminology.Terminology`);
* ``ValueSet/$validate-code`` (https://hl7.org/fhir/R4/valueset-operation-validate-code.html): url,
  valueSetVersion, system, code, display, coding, codeableConcept -> Parameters result, message, display;
* ``ConceptMap/$translate`` (https://hl7.org/fhir/R4/conceptmap-operation-translate.html): url,
  conceptMapVersion, system, code, coding, targetsystem, target, reverse -> Parameters result, message,
  match (equivalence, concept, source). ``target`` is a ValueSet in R4; when no ValueSet has that url it is
  taken as a target code system (a convenience).

Every operation works at type level (``[base]/CodeSystem/$lookup?...``) and instance level
(``[base]/CodeSystem/[id]/$lookup?...``: the instance's url and version are used), with GET (query string) or
POST (a Parameters body). All go through ``services.conformance.terminology()``, so they see the versions in
force the moment a terminology maintainer publishes a new one, in every server process. Errors: a missing
parameter is 400, an unknown CodeSystem/ValueSet/ConceptMap or instance 404, an unknown code in ``$lookup``
404 (``$validate-code`` answers ``result=false`` instead).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fhir_server.context import RequestContext
from fhir_server.errors import InvalidRequest, NotFound
from fhir_server.json_types import Json
from fhir_server.operations import OperationRegistry, OperationRequest, OperationResponse, OperationSpec
from fhir_server.services import Services
from fhir_server.storage.documents import instant, now_ms
from fhir_server.terminology import CodeValidation, ExpansionError, Terminology, split_canonical

OPERATION_BASE = "http://hl7.org/fhir/OperationDefinition"


# -- parameters in ----------------------------------------------------------------------------------------


def _text(op: OperationRequest, name: str) -> str | None:
    value = op.raw_param(name)
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise InvalidRequest(f"Parameter '{name}' must be a primitive value", code="invalid", expression=(name,))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _int(op: OperationRequest, name: str) -> int | None:
    text = _text(op, name)
    if text is None:
        return None
    if not text.isdigit():
        raise InvalidRequest(f"Parameter '{name}' must be a non-negative integer, not '{text}'", code="value",
                             expression=(name,))
    return int(text)


def _flag(op: OperationRequest, name: str) -> bool:
    text = _text(op, name)
    if text not in (None, "true", "false"):
        raise InvalidRequest(f"Parameter '{name}' must be true or false", code="value", expression=(name,))
    return text == "true"


def _complex(op: OperationRequest, name: str) -> Json | None:
    value = op.raw_param(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest(f"Parameter '{name}' must be a complex value (POST a Parameters resource)",
                             code="invalid", expression=(name,))
    return value


def _code_and_system(op: OperationRequest, code_name: str = "code", system_name: str | None = "system",
                     coding_name: str = "coding") -> tuple[str | None, str | None]:
    """``code`` + ``system``, or a ``coding`` (which wins when both are given)."""
    coding = _complex(op, coding_name)
    if coding is not None:
        return coding.get("code"), coding.get("system")
    return _text(op, code_name), _text(op, system_name) if system_name else None


def _canonical(url: str, version: str | None) -> str:
    return f"{url}|{version}" if version and "|" not in url else url


async def _instance_canonical(ctx: RequestContext, services: Services, op: OperationRequest) -> str | None:
    """At instance level, ``url|version`` of the addressed CodeSystem/ValueSet/ConceptMap (404 if none)."""
    if op.level != "instance" or op.resource_type is None or op.resource_id is None:
        return None
    current = await services.store.current(ctx, op.resource_type, op.resource_id)
    if current is None or current.deleted or current.resource is None:
        raise NotFound(f"{op.resource_type}/{op.resource_id} is not known")
    resource = current.resource
    if not resource.get("url"):
        raise InvalidRequest(f"{op.resource_type}/{op.resource_id} has no canonical url", code="invalid")
    return _canonical(resource["url"], resource.get("version"))


# -- parameters out ---------------------------------------------------------------------------------------


def _parameters(parts: list[Json]) -> OperationResponse:
    return OperationResponse(200, {"resourceType": "Parameters", "parameter": parts})


def _typed(value: Any, declared: str | None) -> Json:
    """A ``value[x]`` for a property value, typed after the CodeSystem's ``property.type`` when declared."""
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int):
        return {"valueInteger": value}
    if isinstance(value, (float, Decimal)):
        return {"valueDecimal": value}
    if isinstance(value, dict):
        return {"valueCoding": value}
    kind = {"code": "Code", "string": "String", "dateTime": "DateTime"}.get(declared or "code", "String")
    return {f"value{kind}": value}


# -- CodeSystem -------------------------------------------------------------------------------------------


async def _terminology(services: Services) -> Terminology:
    return await services.conformance.terminology()


async def _system(ctx: RequestContext, services: Services, op: OperationRequest, system: str | None,
                  version_name: str = "version") -> str:
    canonical = await _instance_canonical(ctx, services, op)
    if canonical is not None:
        return canonical
    if not system:
        raise InvalidRequest("The code system is missing: give 'system' (or a coding), or call the operation "
                             "on a CodeSystem instance", code="required", expression=("system",))
    return _canonical(system, _text(op, version_name))


async def lookup(ctx: RequestContext, services: Services, op: OperationRequest) -> OperationResponse:
    """CodeSystem ``$lookup``."""
    code, system = _code_and_system(op)
    if not code:
        raise InvalidRequest("$lookup needs a code (or a coding)", code="required", expression=("code",))
    canonical = await _system(ctx, services, op, system)
    term = await _terminology(services)
    index = term.code_system(*split_canonical(canonical))
    if index is None:
        raise NotFound(f"CodeSystem {canonical} is not known to this server")
    found = term.lookup(canonical, code)
    if found is None:
        raise NotFound(f"Code '{code}' is not defined in {canonical}", code="not-found", expression=("code",))
    wanted = {v for k, v in op.params if k == "property"}
    wanted |= {str(p.get("valueCode")) for p in op.parameters() if p.get("name") == "property"}
    declared = {p.get("code"): p.get("type") for p in index.resource.get("property") or []}
    parts: list[Json] = [{"name": "name", "valueString": index.resource.get("name") or index.url}]
    if found.version:
        parts.append({"name": "version", "valueString": found.version})
    if found.display:
        parts.append({"name": "display", "valueString": found.display})
    for designation in found.designations:
        sub = [{"name": k, ("valueCoding" if k == "use" else "valueCode" if k == "language" else "valueString"): v}
               for k, v in designation.items() if k in ("language", "use", "value")]
        parts.append({"name": "designation", "part": sub})
    props: list[tuple[str, Json]] = [("parent", {"valueCode": c}) for c in found.parents]
    props += [("child", {"valueCode": c}) for c in found.children]
    if found.definition:
        props.append(("definition", {"valueString": found.definition}))
    props += [(k, _typed(v, declared.get(k))) for k, v in found.properties]
    for name, value in props:
        if not wanted or name in wanted:
            parts.append({"name": "property", "part": [{"name": "code", "valueCode": name},
                                                       {"name": "value", **value}]})
    return _parameters(parts)


async def subsumes(ctx: RequestContext, services: Services, op: OperationRequest) -> OperationResponse:
    """CodeSystem ``$subsumes``."""
    code_a, system_a = _code_and_system(op, "codeA", "system", "codingA")
    code_b, system_b = _code_and_system(op, "codeB", "system", "codingB")
    if not code_a or not code_b:
        raise InvalidRequest("$subsumes needs codeA and codeB (or codingA and codingB)", code="required")
    if system_a and system_b and system_a != system_b:
        raise InvalidRequest("codingA and codingB are from different code systems", code="invalid")
    canonical = await _system(ctx, services, op, system_a or system_b)
    term = await _terminology(services)
    if term.code_system(*split_canonical(canonical)) is None:
        raise NotFound(f"CodeSystem {canonical} is not known to this server")
    try:
        outcome = term.subsumes(canonical, code_a, code_b)
    except KeyError as exc:
        raise InvalidRequest(f"$subsumes: {exc.args[0] if exc.args else exc}", code="not-found") from exc
    return _parameters([{"name": "outcome", "valueCode": outcome}])


def _validation_parameters(result: CodeValidation) -> OperationResponse:
    parts: list[Json] = [{"name": "result", "valueBoolean": result.result}]
    if result.message:
        parts.append({"name": "message", "valueString": result.message})
    if result.display:
        parts.append({"name": "display", "valueString": result.display})
    return _parameters(parts)


async def code_system_validate_code(ctx: RequestContext, services: Services,
                                    op: OperationRequest) -> OperationResponse:
    """CodeSystem ``$validate-code`` (the code system is ``url``, a coding's system, or the instance)."""
    code, system = _code_and_system(op, "code", "url")
    if not code:
        raise InvalidRequest("$validate-code needs a code (or a coding)", code="required", expression=("code",))
    canonical = await _system(ctx, services, op, system)
    term = await _terminology(services)
    if term.code_system(*split_canonical(canonical)) is None:
        raise NotFound(f"CodeSystem {canonical} is not known to this server")
    result = term.validate_in_system(canonical, code)
    display = _text(op, "display")
    if result.result and display and result.display and display.lower() != result.display.lower():
        result = CodeValidation(True, f"display '{display}' differs from '{result.display}'", result.display)
    return _validation_parameters(result)


# -- ValueSet ---------------------------------------------------------------------------------------------


async def _value_set(ctx: RequestContext, services: Services, op: OperationRequest, term: Terminology) -> str:
    canonical = await _instance_canonical(ctx, services, op)
    if canonical is None:
        url = _text(op, "url")
        if not url:
            raise InvalidRequest("The value set is missing: give 'url', or call the operation on a ValueSet "
                                 "instance", code="required", expression=("url",))
        canonical = _canonical(url, _text(op, "valueSetVersion"))
    if term.resource("ValueSet", canonical) is None:
        raise NotFound(f"ValueSet {canonical} is not known to this server")
    return canonical


def _expansion_error(exc: ExpansionError) -> InvalidRequest | NotFound:
    if exc.code == "not-found":
        return NotFound(str(exc))
    return InvalidRequest(str(exc), code=exc.code)


async def expand(ctx: RequestContext, services: Services, op: OperationRequest) -> OperationResponse:
    """ValueSet ``$expand``: the ValueSet itself, with ``expansion`` (the operation's single ``return``)."""
    if op.resource_type == "ValueSet" and op.level == "type" and _complex(op, "valueSet") is not None:
        raise InvalidRequest("$expand of a ValueSet given in the request is not supported: store it first",
                             code="not-supported", expression=("valueSet",))
    term = await _terminology(services)
    canonical = await _value_set(ctx, services, op, term)
    count, offset = _int(op, "count"), _int(op, "offset") or 0
    try:
        expanded = term.expand(canonical, _text(op, "filter"), count, offset)
    except ExpansionError as exc:
        raise _expansion_error(exc) from exc
    expanded["expansion"] = {**expanded["expansion"], "timestamp": instant(now_ms())}  # when it was done
    return OperationResponse(200, expanded)


async def value_set_validate_code(ctx: RequestContext, services: Services,
                                  op: OperationRequest) -> OperationResponse:
    """ValueSet ``$validate-code``: a code (+system), a coding, or a codeableConcept (valid if one coding is)."""
    term = await _terminology(services)
    canonical = await _value_set(ctx, services, op, term)
    display = _text(op, "display")
    concept = _complex(op, "codeableConcept")
    if concept is not None:
        candidates = [(c.get("system"), c.get("code"), c.get("display")) for c in concept.get("coding") or []]
    else:
        code, system = _code_and_system(op)
        candidates = [(system, code, display)] if code else []
    if not candidates or not all(code for _, code, _ in candidates):
        raise InvalidRequest("$validate-code needs a code, a coding or a codeableConcept", code="required",
                             expression=("code",))
    try:
        results = [term.validate_code(canonical, system, str(code), shown) for system, code, shown in candidates]
    except ExpansionError as exc:
        raise _expansion_error(exc) from exc
    good = [r for r in results if r.result]
    return _validation_parameters(good[0] if good else results[0])


# -- ConceptMap -------------------------------------------------------------------------------------------


async def translate(ctx: RequestContext, services: Services, op: OperationRequest) -> OperationResponse:
    """ConceptMap ``$translate`` with one ConceptMap (``url`` or the instance) or every map the server holds."""
    term = await _terminology(services)
    code, system = _code_and_system(op)
    if not code or not system:
        raise InvalidRequest("$translate needs system and code (or a coding)", code="required",
                             expression=("code",))
    concept_map = await _instance_canonical(ctx, services, op)
    if concept_map is None and _text(op, "url"):
        concept_map = _canonical(str(_text(op, "url")), _text(op, "conceptMapVersion"))
    if concept_map is not None and term.resource("ConceptMap", concept_map) is None:
        raise NotFound(f"ConceptMap {concept_map} is not known to this server")
    target_system, target = _text(op, "targetsystem"), _text(op, "target")
    target_set = None
    if target is not None:
        if term.resource("ValueSet", target) is not None:
            target_set = term.membership(target)
        elif target_system is None:
            target_system = target
    matches = term.translate(system, code, target_system, concept_map, reverse=_flag(op, "reverse"))
    if target_set is not None:
        matches = [m for m in matches if m.system and m.code and target_set.contains(m.system, m.code)]
    usable = [m for m in matches if m.usable]
    parts: list[Json] = [{"name": "result", "valueBoolean": bool(usable)}]
    if not usable:
        parts.append({"name": "message", "valueString": f"No usable translation of {system}|{code}"})
    for m in matches:
        sub: list[Json] = [{"name": "equivalence", "valueCode": m.equivalence}]
        if m.code is not None:
            coding = {k: v for k, v in (("system", m.system), ("code", m.code), ("display", m.display)) if v}
            sub.append({"name": "concept", "valueCoding": coding})
        sub.append({"name": "source", "valueUri": m.source})
        parts.append({"name": "match", "part": sub})
    return _parameters(parts)


# -- registration ----------------------------------------------------------------------------------------


def register(registry: OperationRegistry) -> None:
    """The terminology operations, at type and instance level, GET and POST."""
    levels = frozenset({"type", "instance"})
    for name, kind, handler, definition, doc in (
        ("lookup", "CodeSystem", lookup, "CodeSystem-lookup", "Details of a code (display, properties, "
         "parent/child)"),
        ("subsumes", "CodeSystem", subsumes, "CodeSystem-subsumes", "Is-a relation of two codes"),
        ("validate-code", "CodeSystem", code_system_validate_code, "CodeSystem-validate-code",
         "Is a code defined in the code system"),
        ("expand", "ValueSet", expand, "ValueSet-expand", "Expansion (filter, count, offset)"),
        ("validate-code", "ValueSet", value_set_validate_code, "ValueSet-validate-code",
         "Is a code in the value set"),
        ("translate", "ConceptMap", translate, "ConceptMap-translate", "Translate a code with concept maps"),
    ):
        registry.register(OperationSpec(name, handler, levels, types=frozenset({kind}),
                                        definition=f"{OPERATION_BASE}/{definition}", documentation=doc))
