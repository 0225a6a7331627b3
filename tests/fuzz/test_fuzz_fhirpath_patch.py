"""Property-based fuzzing of FHIRPath Patch (https://hl7.org/fhir/R4/fhirpatch.html) on resources generated from
the R4 StructureDefinitions (``strategies.py``), in plain-FHIR mode.

Operations are drawn from the resource's own elements (paths that select something, or nothing, or several), from
names that are and are not elements, with values of several types or none, and as text that is not FHIRPath.
Properties: no answer is a 5xx; a 2xx stores what it answers; a refusal is a 4xx OperationOutcome that leaves the
stored version as it was.
"""

from __future__ import annotations

from typing import Any

import httpx
from hypothesis import event, given
from hypothesis import strategies as st

from fhir_server import fhirjson
from tests.conftest import FHIR_JSON
from tests.fuzz.checks import assert_not_server_error, outcome_of
from tests.fuzz.strategies import resources

HEADERS = {"Content-Type": FHIR_JSON}
VALUES = st.one_of(
    st.none(),
    st.builds(lambda v: {"valueString": v}, st.text(max_size=8)),
    st.builds(lambda v: {"valueBoolean": v}, st.booleans()),
    st.builds(lambda v: {"valueInteger": v}, st.integers(-3, 3)),
    st.builds(lambda v: {"valueCode": v}, st.sampled_from(["final", "male", "x y", ""])),
    st.just({"valueCoding": {"system": "http://loinc.org", "code": "1-8"}}),
    st.just({"part": [{"name": "text", "valueString": "t"}]}),
)


@st.composite
def paths(draw: st.DrawFn, resource: dict[str, Any]) -> str:
    """A path over ``resource``: its type, one of its elements and maybe one below, a suffix; or not FHIRPath."""
    kind = resource["resourceType"]
    names = sorted(k for k in resource if k != "resourceType") or ["id"]
    path = kind
    if draw(st.booleans()):
        name = draw(st.sampled_from(names))
        path += f".{name}"
        value = resource.get(name)
        inner = value[0] if isinstance(value, list) and value else value
        if isinstance(inner, dict) and inner and draw(st.booleans()):
            path += f".{draw(st.sampled_from(sorted(inner)))}"
        path += draw(st.sampled_from(["", "[0]", "[1]", ".first()", ".last()", ".where(true)",
                                      ".where(false)", ".where($this.exists())", ".count()", ".ofType(string)"]))
    broken = ["", "Patient.", "%x", "1 +", "(", kind + ".nope"]
    return draw(st.sampled_from(broken)) if draw(st.integers(0, 5)) == 0 else path


NEEDS = {"add": ("name", "value"), "insert": ("value", "index"), "replace": ("value",),
         "move": ("source", "destination"), "delete": ()}


@st.composite
def operations(draw: st.DrawFn, resource: dict[str, Any]) -> dict[str, Any]:
    """Mostly well-formed operations (the parts their type needs, indexes from 0), sometimes not."""
    kind = draw(st.sampled_from([*NEEDS, *NEEDS, "delete", "delete", "x"]))  # a delete applies most often
    parts: list[dict[str, Any]] = [{"name": "type", "valueCode": kind},
                                   {"name": "path", "valueString": draw(paths(resource))}]
    wanted = set(NEEDS.get(kind, ())) | {n for n in ("name", "value", "index") if draw(st.integers(0, 4)) == 0}
    if "name" in wanted:
        names = sorted(k for k in resource if k != "resourceType")
        parts.append({"name": "name", "valueString": draw(st.sampled_from([*names, "nope", "extension"]))})
    value = draw(VALUES) if "value" in wanted else None
    if value is not None:
        parts.append({"name": "value", **value})
    for name in ("index", "source", "destination"):
        if name in wanted:
            lowest = -1 if draw(st.integers(0, 9)) == 0 else 0
            parts.append({"name": name, "valueInteger": draw(st.integers(lowest, 3))})
    return {"name": "operation", "part": parts}


@given(data=st.data(), resource=resources())
async def test_a_fhirpath_patch_is_applied_or_refused_never_a_server_error(
        client: httpx.AsyncClient, data: st.DataObject, resource: dict[str, Any]) -> None:
    created = await client.post(f"/fhir/{resource['resourceType']}", content=fhirjson.dumps(resource),
                                headers=HEADERS)
    assert created.status_code == 201, created.text[:2000]
    stored = fhirjson.loads(created.content)
    location = f"/fhir/{resource['resourceType']}/{stored['id']}"
    document = {"resourceType": "Parameters",
                "parameter": data.draw(st.lists(operations(resource), min_size=1, max_size=3), label="operations")}
    response = await client.patch(location, content=fhirjson.dumps(document), headers=HEADERS)
    assert_not_server_error(response)
    event(f"status {response.status_code}")  # --hypothesis-show-statistics: how many were applied
    after = fhirjson.loads((await client.get(location)).content)
    if response.status_code == 200:
        assert after == fhirjson.loads(response.content)
    else:
        outcome_of(response)
        assert after["meta"]["versionId"] == stored["meta"]["versionId"]
