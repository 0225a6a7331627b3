"""``search/semijoin.py``: the ids a ``_has`` refers to, released in ascending order from resources read in the
order of their smallest reference, including resources with several references (of several types), which
``Observation.subject`` never has but other reference parameters do (``Group.member``, ``performer``)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from fhir_server.search import semijoin
from fhir_server.search.compile import CompiledSearch, HasJoin
from fhir_server.search.param_types import reference

JOIN = HasJoin("Group", "member", "Patient", CompiledSearch("Group", {}, []))
TYPES = ("Device", "Patient", "Practitioner")


def doc(refs: list[str]) -> dict[str, Any]:
    """A stored resource's ``sp`` of a reference parameter (``member``) with these references."""
    entries = [{reference.REFERENCE: r, reference.TYPE: r.split("/")[0], reference.ID: r.split("/")[1]}
               for r in refs]
    return {"sp": {"member": entries, "_sort": {"member": {"a": min(refs), "d": max(refs)}}}}


def item(d: dict[str, Any]) -> semijoin.Item:
    """What ``semijoin.items_pipeline`` gives for the resource ``d``."""
    sort = d["sp"]["_sort"]["member"]
    return sort["a"] if sort["a"] == sort["d"] else {"a": sort["a"], "e": d["sp"]["member"]}


def released(docs: list[dict[str, Any]], after: str | None) -> list[str]:
    """What ``interactions/search.py`` reads: the straddling resources first, then the stream in order."""
    low, high = semijoin.bounds("Patient", after)
    ids = semijoin.AscendingIds(JOIN, low, high)

    def key(d: dict[str, Any]) -> tuple[str, str]:
        sort = d["sp"]["_sort"]["member"]
        return sort["a"], sort["d"]

    ids.hold(item(d) for d in docs if key(d)[0] <= low < key(d)[1])
    out: list[str] = []
    for d in sorted((d for d in docs if low < key(d)[0] < high), key=lambda d: key(d)[0]):
        out += ids.add(item(d))
    return out + ids.rest()


@pytest.mark.parametrize("seed", range(30))
def test_ids_come_once_in_ascending_order_whatever_the_references_per_resource(seed: int) -> None:
    rng = random.Random(seed)
    docs = [doc([f"{rng.choice(TYPES)}/{rng.randrange(40):02}" for _ in range(rng.choice((1, 1, 2, 3)))])
            for _ in range(rng.randrange(1, 30))]
    after = rng.choice([None, f"{rng.randrange(40):02}"])
    every = {r.split("/")[1] for d in docs for e in d["sp"]["member"] if (r := e["r"]).startswith("Patient/")}
    assert released(docs, after) == sorted(i for i in every if after is None or i > after)


def test_a_resource_read_twice_adds_nothing() -> None:
    low, high = semijoin.bounds("Patient", None)
    ids = semijoin.AscendingIds(JOIN, low, high)
    both = doc(["Patient/a", "Patient/c"])
    assert ids.add(item(both)) == ["a"]
    assert ids.add(item(both)) == []  # the rest of a batch is read again from its last smallest reference
    assert ids.add(item(doc(["Patient/b"]))) == ["b"]
    assert ids.rest() == ["c"]
