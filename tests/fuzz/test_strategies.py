"""The fuzz generator's own promises: each mutation names the element a conformant server must report."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.strategies import MUTATORS, locations


def _procedure(note: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Procedure", "status": "completed", "subject": {"reference": "Patient/p"},
            "note": [note]}


@given(st.data())
def test_removing_an_objects_only_required_element_names_the_now_empty_object(data: st.DataObject) -> None:
    resource = _procedure({"text": "a"})
    text = [p for p in locations(resource) if p.path == "Procedure.note[0].text"]
    mutation = MUTATORS["missing required element"](data.draw, resource, text)
    assert resource["note"] == [{}]
    assert mutation.path == "Procedure.note[0]"


@given(st.data())
def test_removing_a_required_element_beside_others_names_the_element(data: st.DataObject) -> None:
    resource = _procedure({"text": "a", "time": "2020-01-01"})
    text = [p for p in locations(resource) if p.path == "Procedure.note[0].text"]
    mutation = MUTATORS["missing required element"](data.draw, resource, text)
    assert resource["note"] == [{"time": "2020-01-01"}]
    assert mutation.path == "Procedure.note[0].text"
