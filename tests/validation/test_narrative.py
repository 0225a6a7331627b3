"""Narrative XHTML (https://hl7.org/fhir/R4/narrative.html#xhtml), as a golden table: each row a ``div`` and what
the server says of it, derived by hand from narrative.html (txt-1, txt-2, "no support for HTML entities like
&nbsp;", "SHALL NOT contain ... scripts, forms, ... event related attributes", images as ``data:`` URLs)."""

from __future__ import annotations

import httpx
import pytest

from fhir_server.validation.narrative import narrative_problem, narrative_warnings
from tests.all_types.examples import example_files, load
from tests.conftest import FHIR_JSON, body, parse, patient, unique

NS = 'xmlns="http://www.w3.org/1999/xhtml"'

VALID = [
    ("plain text", f"<div {NS}>This is a simple example with only plain text</div>"),
    ("basic formatting", f"<div {NS}><p>This is an <i>example</i> with some <b>xhtml</b> formatting.</p></div>"),
    ("a table with the attributes HL7's examples use",
     f'<div {NS}><table class="grid" border="1" cellpadding="2" cellspacing="0"><tr><td colspan="2" valign="top" '
     f'style="color: red">x</td></tr></table></div>'),
    ("an image alone is content (txt-2)", f'<div {NS}><img src="#pic1" alt="a picture"/></div>'),
    ("an image as a data: URL, as narrative.html recommends",
     f'<div {NS}><p><img src="data:image/png;base64,iVBORw0KGgo="/></p></div>'),
    ("links by name and by href", f'<div {NS}><a name="top"/><a href="https://hl7.org/fhir">FHIR</a></div>'),
    ("language attributes", f'<div {NS} lang="fr" xml:lang="fr"><p dir="ltr">Bonjour</p></div>'),
    ("a character reference for a non-breaking space", f"<div {NS}>a&#160;b &lt;c&gt; &amp;</div>"),
    ("paragraphs inside a div, inline elements inside a paragraph",
     f'<div {NS}><div><p>a <b>b</b><br/><span>c</span></p><p>d</p></div></div>'),
]

INVALID = [
    ("no namespace", "<div>text</div>", "XHTML namespace"),
    ("another root element", f"<p {NS}>text</p>", "must be a div"),
    ("not well-formed", f"<div {NS}><p>unclosed</div>", "not well-formed"),
    ("not XML at all", "just some text", "not well-formed"),
    ("an HTML entity (narrative.html: no support for &nbsp;)", f"<div {NS}>a&nbsp;b</div>", "not well-formed"),
    ("a DTD with an entity", f'<!DOCTYPE div [<!ENTITY e "boom">]><div {NS}>&e;</div>', "DTD"),
    ("a script", f"<div {NS}><script>alert(1)</script>x</div>", "<script>"),
    ("an event attribute", f'<div {NS}><p onclick="steal()">x</p></div>', "onclick"),
    ("a form", f'<div {NS}><form action="https://example.org"><input name="q"/></form>x</div>', "<form>"),
    ("an iframe", f'<div {NS}><iframe src="https://example.org"/>x</div>', "<iframe>"),
    ("an object", f'<div {NS}><object data="x.swf"/>x</div>', "<object>"),
    ("a style element (external stylesheets)", f"<div {NS}><style>p {{ color: red }}</style>x</div>", "<style>"),
    ("a deprecated element", f"<div {NS}><font color='red'>x</font></div>", "<font>"),
    ("a javascript: link", f'<div {NS}><a href="javascript:alert(1)">x</a></div>', "script URL"),
    ("a javascript: link hidden by spaces and case", f'<div {NS}><a href=" Java\tScript:alert(1)">x</a></div>',
     "script URL"),
    ("a data: URL of a page", f'<div {NS}><a href="data:text/html,&lt;script&gt;x&lt;/script&gt;">x</a></div>',
     "script URL"),
    ("an element of another namespace", f'<div {NS}><svg xmlns="http://www.w3.org/2000/svg"/>x</div>', "svg"),
    # HTML 4.01 section 9.3.1; HL7's validator suite, list-xhtml-nested
    ("a paragraph inside a paragraph", f"<div {NS}><p>a<p>b</p></p></div>", "may not contain a <p>"),
    ("a table inside a span inside a paragraph",
     f"<div {NS}><p><span><table><tr><td>x</td></tr></table></span></p></div>", "may not contain a <table>"),
    ("an xlink attribute", f'<div {NS}><a xmlns:xlink="http://www.w3.org/1999/xlink" xlink:href="#x">x</a></div>',
     "attribute"),
]


@pytest.mark.parametrize(("case", "div"), VALID, ids=[row[0] for row in VALID])
def test_valid_narrative(case: str, div: str) -> None:
    assert narrative_problem(div) is None, case


@pytest.mark.parametrize(("case", "div", "problem"), INVALID, ids=[row[0] for row in INVALID])
def test_invalid_narrative(case: str, div: str, problem: str) -> None:
    found = narrative_problem(div)
    assert found is not None and problem in found, (case, found)


async def test_a_narrative_with_a_script_is_refused_with_its_location(client: httpx.AsyncClient) -> None:
    resource = patient(unique(), text={"status": "generated",
                                       "div": f'<div {NS}><p onmouseover="steal()">Jane</p></div>'})
    response = await client.post("/fhir/Patient", content=body(resource), headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 400, response.text
    [issue] = parse(response)["issue"]
    assert issue["expression"] == ["Patient.text.div"] and "onmouseover" in issue["diagnostics"]


def test_an_empty_narrative_is_a_warning_of_txt_2_for_the_resource_and_its_contained_ones() -> None:
    empty = {"status": "generated", "div": f"<div {NS}>\n   <p> </p>\n</div>"}
    resource = patient(unique(), text=empty, contained=[{"resourceType": "Organization", "id": "o", "text": empty}])
    issues = narrative_warnings(resource)
    assert [(i.severity, i.expression) for i in issues] == [("warning", ("Patient.text.div",)),
                                                           ("warning", ("Patient.contained[0].text.div",))]
    assert narrative_warnings(patient(unique(), text={"status": "generated", "div": VALID[3][1]})) == []


def test_the_official_examples_with_an_empty_narrative_are_the_four_hl7_published() -> None:
    flagged = sorted(name for name in example_files() if narrative_warnings(load(name)))
    assert flagged == ["ActivityDefinition-blood-tubes-supply.json", "ActivityDefinition-heart-valve-replacement.json",
                       "EventDefinition-example.json", "Questionnaire-zika-virus-exposure-assessment.json"]


async def test_a_write_with_an_empty_narrative_is_stored_with_the_warning(client: httpx.AsyncClient) -> None:
    resource = patient(unique(), text={"status": "empty", "div": f"<div {NS}> </div>"})
    response = await client.post("/fhir/Patient", content=body(resource),
                                 headers={"Content-Type": FHIR_JSON, "Prefer": "return=OperationOutcome"})
    assert response.status_code == 201, response.text
    assert [(i["severity"], i["expression"]) for i in parse(response)["issue"]] == [
        ("warning", ["Patient.text.div"])]
