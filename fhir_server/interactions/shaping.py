"""Result shaping: ``_summary`` and ``_elements`` (https://hl7.org/fhir/R4/search.html#summary, #elements).

* ``_summary=true``: the elements marked "summary" (``isSummary``) in the type's R4 StructureDefinition, at
  the top level and inside backbone elements (a datatype's elements are kept whole);
  ``text``: ``text``, ``id``, ``meta`` and the mandatory top-level elements; ``data``: everything but ``text``;
  ``count`` is handled by the executor (no entries); ``false``: the whole resource.
* ``_elements=a,b``: those top-level elements plus the mandatory ones (search.html#elements: "servers SHOULD
  return mandatory elements"), ``id`` and ``meta``. A choice element is named without its type
  (``_elements=value`` keeps ``valueQuantity``); ``Type.element`` is accepted as ``element``.

A shaped resource is marked with the SUBSETTED tag, as the spec requires. ``_x`` primitive extension twins
follow their element.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir_server.validation.core import core_definitions
from fhir_server.validation.elements import CORE_PREFIX

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED",
             "display": "Resource encoded in summary mode"}
_ALWAYS = ("resourceType", "id", "meta")


@cache
def _element_names(resource_type: str, within: str = "") -> tuple[frozenset[str], frozenset[str], dict[str, str]]:
    """(summary elements, mandatory elements, choice JSON name -> choice root) of a type's top-level elements,
    or of its backbone element at path ``within`` (``rest.resource`` of a CapabilityStatement), from its R4
    StructureDefinition (``isSummary``, ``min``): every R4 type has one, where the ``fhir.resources`` R4B models
    lack the R4-only types (``MedicinalProduct``...) and changed some (``Evidence``)."""
    summary: set[str] = set()
    mandatory: set[str] = set()
    choices: dict[str, str] = {}
    for name, element in _children(resource_type, within):
        if name.endswith("[x]"):
            name = name[:-3]
            for allowed in element.get("type", ()):
                code = allowed["code"]
                choices[name + code[:1].upper() + code[1:]] = name
        if element.get("isSummary"):
            summary.add(name)
        if element.get("min", 0) >= 1:
            mandatory.add(name)
    return frozenset(summary), frozenset(mandatory), choices


def _children(resource_type: str, within: str) -> list[tuple[str, dict[str, Any]]]:
    """The element definitions directly below ``within`` (a path below the type, "" for the type itself)."""
    prefix = f"{resource_type}.{within}." if within else f"{resource_type}."
    return [(element["path"][len(prefix):], element)
            for element in core_definitions()[f"{CORE_PREFIX}{resource_type}"]["snapshot"]["element"]
            if element["path"].startswith(prefix) and "." not in element["path"][len(prefix):]]


@cache
def _backbones(resource_type: str, within: str = "") -> dict[str, str]:
    """The backbone elements directly below ``within`` (their JSON name -> the path their own children are
    defined at: their own, or the one their ``contentReference`` names, as ``Questionnaire.item.item``)."""
    out: dict[str, str] = {}
    for name, element in _children(resource_type, within):
        path = f"{within}.{name}" if within else name
        reference = element.get("contentReference")
        if reference:
            out[name] = reference.lstrip("#").partition(".")[2]
        elif any(t.get("code") in ("BackboneElement", "Element") for t in element.get("type", ())):
            out[name] = path
    return out


def _summary_of(value: dict[str, Any], resource_type: str, within: str) -> dict[str, Any]:
    """A backbone element with its summary elements only (``_summary=true`` applies below the top level too:
    ``CapabilityStatement.rest.resource.searchParam`` is not summary)."""
    summary, _mandatory, choices = _element_names(resource_type, within)
    backbones = _backbones(resource_type, within)
    return {key: _descend(item, resource_type, backbones[key]) if key in backbones else item
            for key, item in value.items()
            if (bare := key[1:] if key.startswith("_") else key) in summary or choices.get(bare) in summary}


def _descend(item: Any, resource_type: str, within: str) -> Any:
    if isinstance(item, list):
        return [_descend(one, resource_type, within) for one in item]
    return _summary_of(item, resource_type, within) if isinstance(item, dict) else item


def _keep(resource: dict[str, Any], names: set[str] | frozenset[str]) -> dict[str, Any]:
    choices = _element_names(resource["resourceType"])[2]
    out = {}
    for key, value in resource.items():
        bare = key[1:] if key.startswith("_") else key
        if key in _ALWAYS or bare in names or choices.get(bare) in names:
            out[key] = value
    return _tag_subsetted(out)


def _tag_subsetted(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    tags = list(meta.get("tag") or [])
    if not any(t.get("code") == "SUBSETTED" for t in tags):
        tags.append(SUBSETTED)
    meta["tag"] = tags
    resource["meta"] = meta
    return resource


def summarize(resource: dict[str, Any], mode: str | None) -> dict[str, Any]:
    """``resource`` shaped by ``_summary=mode`` (search.html#summary)."""
    if mode in (None, "false", "count"):
        return resource
    summary, mandatory, _choices = _element_names(resource["resourceType"])
    if mode == "true":
        backbones = _backbones(resource["resourceType"])
        kept = _keep(resource, summary)
        return {key: _descend(value, resource["resourceType"], backbones[key]) if key in backbones else value
                for key, value in kept.items()}
    if mode == "text":
        return _keep(resource, {"text"} | mandatory)
    if mode == "data":
        return _tag_subsetted({k: v for k, v in resource.items() if k != "text"})
    return resource


def select_elements(resource: dict[str, Any], elements: tuple[str, ...]) -> dict[str, Any]:
    """``resource`` with only ``elements`` (and the mandatory ones), search.html#elements."""
    if not elements:
        return resource
    _summary, mandatory, _choices = _element_names(resource["resourceType"])
    wanted = {e.split(".", 1)[-1] if "." in e else e for e in elements}
    return _keep(resource, wanted | mandatory)
