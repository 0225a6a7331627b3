"""Snapshot generation: a profile's differential applied to its base's snapshot.

https://hl7.org/fhir/R4/profiling.html#snapshot and elementdefinition.html#id: differential elements are
matched to the base by element id; an id that the base does not list either names a slice
(``Observation.component:phase``, created as a copy of the sliced element and its children, placed after the
sliced element's existing slices, with a minimum of 0 unless the differential gives one) or a child of a
complex datatype (``Patient.identifier.system``), created by unfolding the datatype's own snapshot under its
parent. Constraints are added to the base's; every other
property replaces the base's.

Used by ``scripts/build_ig.py`` for the registry's profiles and by the server for StructureDefinitions that
are published with a differential only.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from fhir_server.json_types import Json

SdResolver = Callable[[str], Json | None]
CORE_PREFIX = "http://hl7.org/fhir/StructureDefinition/"


class SnapshotError(ValueError):
    """The differential cannot be applied to its base."""


def generate_snapshot(sd: Json, resolve: SdResolver) -> Json:
    """A copy of ``sd`` with ``snapshot`` generated from its base (resolved by canonical url)."""
    base = resolve(sd.get("baseDefinition", ""))
    if base is None:
        raise SnapshotError(f"unknown base definition {sd.get('baseDefinition')}")
    if "snapshot" not in base:
        base = generate_snapshot(base, resolve)
    elements = [copy.deepcopy(e) for e in base["snapshot"]["element"]]
    for e in elements:
        # Invariants the base defines itself carry no source; mark them as the base's (not the profile's).
        for c in e.get("constraint", []):
            c.setdefault("source", base.get("url", ""))
    for diff in sd.get("differential", {}).get("element", []):
        eid = diff.get("id") or diff["path"]
        index = _locate(elements, eid, resolve)
        _merge(elements[index], diff, sd.get("url", ""))
    out = copy.deepcopy(sd)
    out["snapshot"] = {"element": elements}
    return out


def _segments(eid: str) -> list[str]:
    return eid.split(".")


def _path_of(eid: str) -> str:
    """Element path: the id without slice names."""
    return ".".join(s.split(":")[0] for s in _segments(eid))


def _find(elements: list[Json], eid: str) -> int | None:
    for i, e in enumerate(elements):
        if e["id"] == eid:
            return i
    return None


def _locate(elements: list[Json], eid: str, resolve: SdResolver) -> int:
    """Index of element ``eid``, creating it (slice or unfolded datatype child) when missing."""
    found = _find(elements, eid)
    if found is not None:
        return found
    segments = _segments(eid)
    if len(segments) < 2:
        raise SnapshotError(f"unknown root element {eid}")
    last = segments[-1]
    if ":" in last:
        return _add_slice(elements, eid, resolve)
    parent = ".".join(segments[:-1])
    parent_index = _locate(elements, parent, resolve)
    _unfold(elements, parent_index, resolve)
    found = _find(elements, eid)
    if found is None:
        raise SnapshotError(f"element {eid} is not defined by the type of {parent}")
    return found


def _subtree_end(elements: list[Json], index: int) -> int:
    """Index after the element at ``index``, its children and its slices."""
    eid = elements[index]["id"]
    j = index + 1
    while j < len(elements) and elements[j]["id"].startswith((eid + ".", eid + ":")):
        j += 1
    return j


def _add_slice(elements: list[Json], eid: str, resolve: SdResolver) -> int:
    sliced_id, _, slice_name = eid.rpartition(":")
    index = _locate(elements, sliced_id, resolve)
    if "slicing" not in elements[index] and not elements[index]["path"].endswith("xtension"):
        raise SnapshotError(f"slice {eid} of {sliced_id}, which has no slicing")
    end = _subtree_end(elements, index)
    children = [e for e in elements[index + 1:end] if e["id"].startswith(sliced_id + ".")]
    root = copy.deepcopy(elements[index])
    root.pop("slicing", None)
    # A slice's minimum is its own, 0 unless its differential says more (profiling.html#slice-cardinality: the
    # sliced element's minimum counts all its slices together): a profile making effective[x] 1..1 and slicing
    # it by type does not require every type.
    root["id"], root["sliceName"], root["min"] = eid, slice_name, 0
    copies = [root]
    for child in children:
        c = copy.deepcopy(child)
        c["id"] = eid + child["id"][len(sliced_id):]
        copies.append(c)
    at = _subtree_end(elements, index)
    elements[at:at] = copies
    return at


def _unfold(elements: list[Json], index: int, resolve: SdResolver) -> None:
    """Insert the children of the (single) datatype of element ``index`` right after it."""
    parent = elements[index]
    if _subtree_end(elements, index) > index + 1 and elements[index + 1]["id"].startswith(parent["id"] + "."):
        return  # already unfolded
    types = parent.get("type", [])
    if len(types) != 1:
        raise SnapshotError(f"{parent['id']} has {len(types)} types: restrict to one to constrain children")
    code = types[0]["code"]
    profiles = types[0].get("profile") or [CORE_PREFIX + code]
    type_sd = resolve(profiles[0])
    if type_sd is None or "snapshot" not in type_sd:
        raise SnapshotError(f"no snapshot for type {profiles[0]} of {parent['id']}")
    root_id = type_sd["snapshot"]["element"][0]["id"]
    children = []
    for el in type_sd["snapshot"]["element"][1:]:
        c = copy.deepcopy(el)
        c["id"] = parent["id"] + c["id"][len(root_id):]
        c["path"] = parent["path"] + c["path"][len(root_id):]
        children.append(c)
    elements[index + 1:index + 1] = children


def _merge(element: Json, diff: Json, source: str) -> None:
    for key, value in diff.items():
        if key in ("id", "path"):
            continue
        if key == "constraint":
            added = [{**c, "source": c.get("source", source)} for c in copy.deepcopy(value)]
            keys = {c["key"] for c in added}
            element["constraint"] = [c for c in element.get("constraint", []) if c["key"] not in keys] + added
        elif key == "condition":
            element["condition"] = sorted({*element.get("condition", []), *value})
        else:
            element[key] = copy.deepcopy(value)
    element["path"] = _path_of(element["id"])
