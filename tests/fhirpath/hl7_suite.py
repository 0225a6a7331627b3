"""HL7's FHIRPath test suite for FHIR R4 (``tests/data/fhirpath/tests-fhir-r4.xml``), read into cases.

The suite's format (https://github.com/HL7/FHIRPath/blob/master/tests/testSchema.xsd): ``<group>``s of ``<test>``s,
each with an ``inputfile`` (an R4 example resource; none: the expression reads no resource), an ``<expression>``
(``invalid="syntax|semantic|execution"`` when it must fail), and the expected ``<output type="...">`` items in order
(none: the empty collection; ``ordered="false"``: in any order). ``predicate="true"`` asks for the result as a
boolean (does it exist); ``mode="strict"`` tests need an engine that type-checks expressions against the model
before running them, which this server's engine does not do; ``version`` names the FHIRPath release that added the
function tested (2.1.0: after N1, the release R4 uses).
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
    "explanationofbenefit-example.json": DATA / "fhir-r4-examples-all" / "ExplanationOfBenefit-EB3500.json",
    "appointment-examplereq.json": DATA / "fhir-r4-examples-all" / "Appointment-examplereq.json",
}
NO_INPUT = ""  # a case without inputfile: the expression is evaluated on an empty focus

# Output types whose items are JSON strings here (FHIR primitives, and the system String).
_DATE_TYPES = frozenset({"date", "dateTime", "time", "instant", "Date", "DateTime", "Time"})
_TEXT_TYPES = frozenset({"string", "code", "uri", "id"}) | _DATE_TYPES

Item = tuple[str, str]  # (kind, text): "boolean", "integer", "decimal", "Quantity", "text" or "complex"
ANY = "any"  # the kind of an expected output written without a type: its text alone is compared


@dataclass(frozen=True)
class SuiteCase:
    number: int  # position in the file, from 1: names repeat, so ids carry it
    group: str
    name: str
    inputfile: str
    expression: str
    invalid: str | None  # "syntax", "semantic" or "execution": the expression must fail (semantic: or be empty)
    strict: bool
    predicate: bool
    ordered: bool
    version: str | None
    outputs: tuple[Item, ...]

    @property
    def id(self) -> str:
        return "-".join(filter(None, (f"{self.number:03d}", self.group, self.name))).replace(" ", "_")

    def resource(self) -> dict[str, Any]:
        return load_input(self.inputfile)


@cache
def load_input(inputfile: str) -> dict[str, Any]:
    if inputfile == NO_INPUT:
        return {}
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
                inputfile=test.get("inputfile", NO_INPUT), expression=expression.text,
                invalid=expression.get("invalid"),
                strict="strict" in (test.get("mode"), expression.get("mode")),
                predicate=test.get("predicate") == "true", ordered=test.get("ordered") != "false",
                version=test.get("version"),
                outputs=tuple(_expected(o.get("type"), o.text or "") for o in test.iter("output"))))
    return cases


def _expected(kind: str | None, text: str) -> Item:
    if kind is None:
        return (ANY, text)
    if kind in _DATE_TYPES:  # written as literals (@1974-12-25, @T12:00): a FHIR value is the text after them
        return ("text", text.removeprefix("@").removeprefix("T") if kind.lower() == "time" else text.removeprefix("@"))
    return ("text", text) if kind in _TEXT_TYPES else (kind, text)


def same_items(got: list[Item], expected: list[Item], ordered: bool) -> bool:
    """Whether ``got`` is ``expected``; an expected item of kind ANY matches any item with its text."""
    if len(got) != len(expected):
        return False
    if not ordered:
        return sorted(got, key=_text_of) == sorted(expected, key=_text_of) or all(
            any(_matches(g, e) for g in got) for e in expected)
    return all(_matches(g, e) for g, e in zip(got, expected, strict=True))


def _text_of(item: Item) -> str:
    return item[1]


def _matches(got: Item, expected: Item) -> bool:
    numbers = ("integer", "decimal")
    if got[0] in numbers and expected[0] in (*numbers, ANY):  # 2 / 2 is 1.0, written 1: equal as numbers
        return (got[0] == expected[0] or expected[0] == ANY) and Decimal(got[1]) == Decimal(expected[1])
    if expected[0] != ANY:
        return got == expected
    return got[1] == expected[1]


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
