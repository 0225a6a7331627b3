"""The R4 element table alone (``validation.primitives``) is the structure check of a write: it refuses every
resource the ``fhir.resources`` R4B model refuses, on the types whose R4B model matches R4 (``R4B_MODEL_TYPES``,
decided by ``scripts/build_snapshots.py``). The model round trip left the write path on that evidence (issue
#14); these tests keep the evidence current: HL7's R4 examples, resources generated from the R4
StructureDefinitions (``tests/fuzz/strategies.py``) and those resources broken in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fhir_server import fhirjson
from fhir_server.validation.primitives import R4B_MODEL_TYPES, check_primitive_types
from tests.fuzz.strategies import mutations, resources

ALL_EXAMPLES = Path(__file__).parents[1] / "data" / "fhir-r4-examples-all"
MODEL_TYPES = sorted(R4B_MODEL_TYPES)


def model_refuses(resource: dict[str, Any]) -> bool:
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    except (ValidationError, KeyError):  # KeyError: a contained resource of a type R4B does not know
        return True
    return False


def table_refuses(resource: dict[str, Any]) -> bool:
    return any(i.severity == "error" for i in check_primitive_types(resource))


def assert_table_refuses_what_the_model_refuses(resource: dict[str, Any]) -> None:
    if model_refuses(resource):
        assert table_refuses(resource), f"only the R4B model refuses {fhirjson.dumps(resource)[:2000]!r}"


def model_type_examples() -> list[Path]:
    """The examples of the R4B-model types (files are named ``Type-id.json``, see that folder's README)."""
    files = sorted(ALL_EXAMPLES.glob("*.json"))
    if len(files) < 785:  # a collection error, never a silent zero tests
        raise RuntimeError(f"{ALL_EXAMPLES} holds only {len(files)} examples")
    return [f for f in files if f.stem.split("-", 1)[0] in R4B_MODEL_TYPES]


@pytest.mark.parametrize("path", model_type_examples(), ids=lambda p: p.stem)
def test_the_table_refuses_every_official_example_the_model_refuses(path: Path) -> None:
    assert_table_refuses_what_the_model_refuses(fhirjson.loads(path.read_bytes()))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_the_table_refuses_every_generated_or_broken_resource_the_model_refuses(data: Any) -> None:
    kind = data.draw(st.sampled_from(MODEL_TYPES), label="type")
    resource = data.draw(resources(kind), label="resource")
    assert_table_refuses_what_the_model_refuses(resource)
    broken = data.draw(mutations(resource), label="broken")
    if broken.raw is None:  # a change of the JSON text (a repeated name, a lone surrogate) is the parser's
        assert_table_refuses_what_the_model_refuses(broken.resource)


@pytest.mark.parametrize("contained", [{"resourceType": "Foo"}, {"resourceType": "HumanName"}, {"id": "x"}])
def test_the_table_refuses_a_contained_resource_of_no_resource_type(contained: dict[str, Any]) -> None:
    resource = {"resourceType": "Patient", "contained": [contained]}
    assert model_refuses(resource) or "resourceType" not in contained
    assert table_refuses(resource)
