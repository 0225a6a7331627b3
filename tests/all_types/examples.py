"""HL7's official R4 examples of every resource type (tests/data/fhir-r4-examples-all/, provenance there)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fhir_server import fhirjson

ALL_EXAMPLES = Path(__file__).resolve().parent.parent / "data" / "fhir-r4-examples-all"
ALL_EXAMPLE_COUNT = 785


def example_files() -> list[str]:
    """The examples' file names (a missing file fails collection, never a silent zero tests)."""
    names = sorted(p.name for p in ALL_EXAMPLES.glob("*.json"))
    if len(names) != ALL_EXAMPLE_COUNT:
        raise RuntimeError(f"{ALL_EXAMPLES} holds {len(names)} examples, expected {ALL_EXAMPLE_COUNT}")
    return names


def load(name: str) -> dict[str, Any]:
    return fhirjson.loads((ALL_EXAMPLES / name).read_bytes())  # type: ignore[no-any-return]


def without_server_meta(resource: dict[str, Any]) -> dict[str, Any]:
    out = dict(resource)
    meta = {k: v for k, v in (out.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        out["meta"] = meta
    else:
        out.pop("meta", None)
    return out
