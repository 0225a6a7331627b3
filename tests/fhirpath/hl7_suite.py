"""HL7's FHIRPath test suite for FHIR R4 (``tests/data/fhirpath/tests-fhir-r4.xml``), read into cases.

The suite's format (https://github.com/HL7/FHIRPath/tree/master/tests): ``<group>``s of ``<test>``s, each with an
``inputfile`` (an R4 example resource), an ``<expression>`` (``invalid="syntax|semantic|true"`` when it must fail),
and the expected ``<output type="...">`` items in order (none: the empty collection). ``predicate="true"`` asks
for the result as a boolean (does it exist); ``mode="strict"`` tests need an engine that type-checks expressions
against the model before running them, which this server's engine does not do.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1] / "data"
SUITE = DATA / "fhirpath" / "tests-fhir-r4.xml"

# The suite's input files are R4's own examples, which the repository holds as JSON (patient-example.xml is
# Patient "example", questionnaire-example.xml is Questionnaire "3141").
INPUT_FILES = {
    "patient-example.xml": DATA / "fhir-r4-examples-all" / "Patient-example.json",
    "observation-example.xml": DATA / "fhir-r4-examples-all" / "Observation-example.json",
    "questionnaire-example.xml": DATA / "fhir-r4-examples-all" / "Questionnaire-3141.json",
}

# Output types whose items are JSON strings here (FHIR primitives, and the system String).
_TEXT_TYPES = frozenset({"string", "code", "uri", "id", "date", "dateTime", "time", "instant"})

Item = tuple[str, str]  # (kind, text): "boolean", "integer", "decimal", "Quantity", "text" or "complex"


@dataclass(frozen=True)
class SuiteCase:
    number: int  # position in the file, from 1: names repeat, so ids carry it
    group: str
    name: str
    inputfile: str
    expression: str
    invalid: str | None  # "syntax", "semantic" or "true": the expression must fail (or, semantic: give nothing)
    strict: bool
    predicate: bool
    outputs: tuple[Item, ...]

    @property
    def id(self) -> str:
        return "-".join(filter(None, (f"{self.number:03d}", self.group, self.name))).replace(" ", "_")

    def resource(self) -> dict[str, Any]:
        return load_input(self.inputfile)


@cache
def load_input(inputfile: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(INPUT_FILES[inputfile].read_text())
    return loaded


def load_cases() -> list[SuiteCase]:
    root = ElementTree.parse(SUITE).getroot()
    cases: list[SuiteCase] = []
    for group in root.iter("group"):
        for test in group.iter("test"):
            expression = test.find("expression")
            assert expression is not None and expression.text is not None
            cases.append(SuiteCase(
                number=len(cases) + 1, group=group.get("name", ""), name=test.get("name", ""),
                inputfile=test.get("inputfile", ""), expression=expression.text,
                invalid=expression.get("invalid"), strict=test.get("mode") == "strict",
                predicate=test.get("predicate") == "true",
                outputs=tuple(_expected(o.get("type", ""), o.text or "") for o in test.iter("output"))))
    return cases


def _expected(kind: str, text: str) -> Item:
    return ("text", text) if kind in _TEXT_TYPES else (kind, text)


def observed(items: list[Any]) -> list[Item]:
    """An engine's result in the suite's terms (a boolean is not an integer; a date is its text)."""
    return [_observed(item) for item in items]


def _observed(item: Any) -> Item:
    if isinstance(item, bool):
        return ("boolean", "true" if item else "false")
    if isinstance(item, int):
        return ("integer", str(item))
    if isinstance(item, Decimal | float):
        return ("decimal", str(item))
    if isinstance(item, str):
        return ("text", item)
    if isinstance(item, dict):
        return ("complex", json.dumps(item, sort_keys=True))
    if "Quantity" in type(item).__name__:  # fhirpathpy's FP_Quantity
        return ("Quantity", str(item))
    return ("text", str(item))  # fhirpathpy's dates and times print as their FHIRPath text
