"""FHIR XML (https://hl7.org/fhir/R4/xml.html) to and from FHIR JSON: ``fhir_server.xml_format``.

Every official R4 example survives JSON -> XML -> JSON exactly (values, digits of decimals, JSON types, narrative
markup); hand-written cases check the XML against xml.html's rules; malformed or non-FHIR XML is refused with a
400 that says what and where."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from defusedxml.ElementTree import fromstring

from fhir_server import fhirjson
from fhir_server.errors import InvalidRequest
from fhir_server.xml_format import resource_from_xml, resource_to_xml
from tests.all_types.examples import example_files, load
from tests.fuzz.checks import canonical

FHIR = "http://hl7.org/fhir"
XHTML = "http://www.w3.org/1999/xhtml"
DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
EXT = "http://example.org/fhir/StructureDefinition/text"


def xml(body: str, root: str = "Patient") -> bytes:
    """A compact document as ``resource_to_xml`` writes it."""
    return f'{DECLARATION}<{root} xmlns="{FHIR}">{body}</{root}>'.encode()


def typed(value: Any) -> Any:
    """``value`` with every scalar as (type, text) and objects as sorted items: equal only when the values, the
    digits of decimals and the JSON types are (``Decimal("1.0") == Decimal("1.00")`` in Python; not here)."""
    if isinstance(value, dict):
        return sorted((key, typed(item)) for key, item in value.items())
    if isinstance(value, list):
        return [typed(item) for item in value]
    return type(value).__name__, str(value)


def child_tags(document: bytes) -> list[str]:
    return [child.tag.removeprefix("{" + FHIR + "}") for child in fromstring(document, forbid_dtd=True)]


# -- HL7's examples ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", example_files())
def test_official_example_round_trips(name: str) -> None:
    resource = load(name)  # fhirjson.loads: decimals are Decimal, as the server holds them
    document = resource_to_xml(resource)
    root = fromstring(document, forbid_dtd=True)
    assert root.tag == f"{{{FHIR}}}{resource['resourceType']}"
    back = resource_from_xml(document)
    assert back == resource
    assert typed(back) == typed(resource)
    assert canonical(back) == canonical(resource)


@pytest.mark.parametrize("name", ["Patient-example.json", "Bundle-bundle-transaction.json",
                                  "Observation-decimal.json", "Questionnaire-qs1.json"])
def test_pretty_xml_reads_back_the_same(name: str) -> None:
    resource = load(name)
    document = resource_to_xml(resource, pretty=True)
    assert document.startswith(f"{DECLARATION}\n<".encode())
    assert b"\n  <" in document  # one element per line, indented
    assert resource_from_xml(document) == resource
    assert typed(resource_from_xml(document)) == typed(resource)


# -- xml.html's rules, both ways ---------------------------------------------------------------------------------


def both_ways(resource: dict[str, Any], document: bytes) -> None:
    assert resource_to_xml(resource) == document
    assert typed(resource_from_xml(document)) == typed(resource)


def test_primitive_with_id_and_extension() -> None:
    # xml.html: <birthDate id="314159" value="1932-09-24"> with an extension; json.html: the _birthDate sibling
    resource = {"resourceType": "Patient", "birthDate": "1970-03-30",
                "_birthDate": {"id": "a1", "extension": [{"url": EXT, "valueString": "Easter 1970"}]}}
    both_ways(resource, xml(f'<birthDate id="a1" value="1970-03-30"><extension url="{EXT}">'
                            '<valueString value="Easter 1970"/></extension></birthDate>'))


def test_primitive_with_an_extension_and_no_value() -> None:
    resource = {"resourceType": "Patient", "_birthDate": {"extension": [{"url": EXT, "valueString": "unknown"}]}}
    both_ways(resource, xml(f'<birthDate><extension url="{EXT}"><valueString value="unknown"/></extension>'
                            '</birthDate>'))


def test_repeating_primitive_with_an_item_that_has_only_an_extension() -> None:
    resource = {"resourceType": "Patient", "name": [{
        "given": [None, "Peter", "James"],
        "_given": [{"extension": [{"url": EXT, "valueString": "Pete"}]}, None, {"id": "g3"}]}]}
    both_ways(resource, xml(f'<name><given><extension url="{EXT}"><valueString value="Pete"/></extension></given>'
                            '<given value="Peter"/><given id="g3" value="James"/></name>'))


def test_repeating_primitive_without_extensions_has_no_underscore_array() -> None:
    back = resource_from_xml(xml('<name><given value="Peter"/><given value="James"/></name>'))
    assert back == {"resourceType": "Patient", "name": [{"given": ["Peter", "James"]}]}


def test_repeating_primitive_with_only_extensions_has_no_value_array() -> None:
    back = resource_from_xml(xml('<name><given id="a"/><given id="b"/></name>'))
    assert back == {"resourceType": "Patient", "name": [{"_given": [{"id": "a"}, {"id": "b"}]}]}


def test_element_id_of_complex_element_is_an_attribute_but_resource_id_an_element() -> None:
    resource = {"resourceType": "Patient", "id": "example",
                "name": [{"id": "n1", "family": "Chalmers"}],
                "contact": [{"id": "c1", "gender": "female"}]}
    both_ways(resource, xml('<id value="example"/><name id="n1"><family value="Chalmers"/></name>'
                            '<contact id="c1"><gender value="female"/></contact>'))


def test_extension_url_is_an_attribute() -> None:
    resource = {"resourceType": "Patient", "extension": [{"id": "e1", "url": EXT, "extension": [
        {"url": "part", "valueBoolean": False}]}]}
    both_ways(resource, xml(f'<extension id="e1" url="{EXT}"><extension url="part"><valueBoolean value="false"/>'
                            '</extension></extension>'))


def test_contained_resource_is_wrapped_in_an_element_named_after_its_type() -> None:
    resource = {"resourceType": "Patient", "id": "p",
                "contained": [{"resourceType": "Organization", "id": "org", "name": "Acme"}],
                "managingOrganization": {"reference": "#org"}}
    both_ways(resource, xml('<id value="p"/><contained><Organization><id value="org"/><name value="Acme"/>'
                            '</Organization></contained><managingOrganization><reference value="#org"/>'
                            '</managingOrganization>'))


def test_bundle_entry_resource_and_response_outcome() -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": "informational"}]}
    resource = {"resourceType": "Bundle", "type": "transaction-response", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "active": True},
         "response": {"status": "201 Created", "outcome": outcome}}]}
    both_ways(resource, xml(
        '<type value="transaction-response"/><entry><fullUrl value="urn:uuid:1"/>'
        '<resource><Patient><active value="true"/></Patient></resource>'
        '<response><status value="201 Created"/><outcome><OperationOutcome><issue><severity value="warning"/>'
        '<code value="informational"/></issue></OperationOutcome></outcome></response></entry>', "Bundle"))


def test_narrative_div_is_xhtml_markup_in_xml_and_a_string_in_json() -> None:
    div = f'<div xmlns="{XHTML}"><p>Hi &amp; <b>bye</b> &lt;3<br/></p></div>'
    resource = {"resourceType": "Patient", "text": {"status": "generated", "div": div}}
    document = xml(f'<text><status value="generated"/>{div}</text>')
    both_ways(resource, document)
    narrative = fromstring(document, forbid_dtd=True)[0][1]
    assert narrative.tag == f"{{{XHTML}}}div"
    assert narrative[0].tag == f"{{{XHTML}}}p"  # markup, not escaped text


def test_narrative_is_kept_as_written() -> None:
    # HL7's examples write both <td/> and <td></td>, carriage returns and &quot; in text: all come back as written
    div = f'<div xmlns="{XHTML}">\r\n<table><tr><td></td><td/><td>&quot;a&quot; &#160;b</td></tr></table></div>'
    resource = {"resourceType": "Patient", "text": {"status": "generated", "div": div}}
    assert resource_from_xml(resource_to_xml(resource, pretty=True))["text"]["div"] == div


@pytest.mark.parametrize("div", [f'<div xmlns="{XHTML}"/>', f'<div xmlns="{XHTML}" />', f'<div xmlns="{XHTML}"></div>',
                                 f"<div xmlns='{XHTML}' title='a/>b'>x</div >", f'<div xmlns="{XHTML}"><br /></div>'])
def test_narrative_forms_are_kept(div: str) -> None:
    resource = {"resourceType": "Patient", "text": {"status": "generated", "div": div}}
    assert resource_from_xml(resource_to_xml(resource))["text"]["div"] == div


@pytest.mark.parametrize("div", [f'<?xml version="1.0"?><div xmlns="{XHTML}">x</div>',
                                 f'<div xmlns="{XHTML}">x</div><!-- after -->', f'<div xmlns="{XHTML}">x</div>\n'])
def test_narrative_with_something_around_the_div_is_normalised(div: str) -> None:
    # json.html: the div string is the div element; what surrounds it cannot stand inside the XML document
    resource = {"resourceType": "Patient", "text": {"status": "generated", "div": div}}
    assert resource_from_xml(resource_to_xml(resource))["text"]["div"] == f'<div xmlns="{XHTML}">x</div>'


def test_narrative_in_a_document_not_in_utf8() -> None:
    document = (f'<?xml version="1.0" encoding="ISO-8859-1"?><Patient xmlns="{FHIR}"><text><status '
                f'value="generated"/><div xmlns="{XHTML}">caf\u00e9</div></text></Patient>').encode("latin-1")
    assert resource_from_xml(document)["text"]["div"] == f'<div xmlns="{XHTML}">caf\u00e9</div>'


def test_narrative_with_namespace_prefixes_is_written_with_the_default_namespace() -> None:
    document = xml(f'<text><status value="generated"/><h:div xmlns:h="{XHTML}"><h:p xml:lang="fr">caf&#233;</h:p>'
                   '<h:br/></h:div></text>')
    div = resource_from_xml(document)["text"]["div"]
    assert div == f'<div xmlns="{XHTML}"><p xml:lang="fr">café</p><br/></div>'
    assert "ns0" not in div


def test_narrative_relying_on_a_prefix_declared_above_it_is_written_anew() -> None:
    document = (f'<Patient xmlns="{FHIR}" xmlns:x="urn:x"><text><status value="generated"/>'
                f'<div xmlns="{XHTML}"><p x:a="1">a</p></div></text></Patient>').encode()
    div = resource_from_xml(document)["text"]["div"]
    assert div == f'<div xmlns="{XHTML}"><p ns0:a="1" xmlns:ns0="urn:x">a</p></div>'
    assert fromstring(div)[0].attrib == {"{urn:x}a": "1"}


@pytest.mark.parametrize("text", ["1.00", "100.0", "1E+2", "0.0000001", "-0.5e-3", "12345678901234567890.5"])
def test_decimal_digits_are_kept(text: str) -> None:
    resource = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                "valueQuantity": {"value": Decimal(text)}}
    document = resource_to_xml(resource)
    assert f'<value value="{Decimal(text)}"/>'.encode() in document
    back = resource_from_xml(document)
    assert typed(back) == typed(resource)
    assert fhirjson.dumps(back) == fhirjson.dumps(resource)


def test_decimal_written_as_an_integer_is_an_int_as_from_json() -> None:
    back = resource_from_xml(xml('<status value="final"/><code><text value="x"/></code>'
                                 '<valueQuantity><value value="100"/></valueQuantity>', "Observation"))
    assert typed(back["valueQuantity"]) == typed(fhirjson.loads(b'{"value": 100}'))


def test_primitive_types() -> None:
    resource = {"resourceType": "Patient", "active": True, "multipleBirthInteger": 2, "gender": "other",
                "deceasedBoolean": False}
    back = resource_from_xml(resource_to_xml(resource))
    assert typed(back) == typed(resource)
    assert b'<active value="true"/>' in resource_to_xml(resource)


def test_strings_keep_whitespace_and_markup_characters() -> None:
    text = 'line 1\nline 2\r\n\t"quoted" & <tagged> \u00e9\U0001f600 '
    resource = {"resourceType": "Patient", "name": [{"text": text}]}
    document = resource_to_xml(resource)
    assert b"&#10;" in document and b"&quot;" in document and b"&lt;tagged&gt;" in document
    assert resource_from_xml(document) == resource


def test_elements_are_written_in_definition_order() -> None:
    resource = {"birthDate": "1970-03-30", "name": [{"given": ["A"], "family": "B"}], "gender": "male",
                "identifier": [{"value": "1"}], "active": True, "meta": {"versionId": "1"}, "id": "x",
                "resourceType": "Patient", "text": {"div": f'<div xmlns="{XHTML}">x</div>', "status": "generated"},
                "extension": [{"valueString": "v", "url": EXT}], "_gender": {"id": "g"}}
    document = resource_to_xml(resource)
    assert child_tags(document) == ["id", "meta", "text", "extension", "identifier", "active", "name", "gender",
                                    "birthDate"]
    name = fromstring(document, forbid_dtd=True).find(f"{{{FHIR}}}name")
    assert name is not None and [c.tag.removeprefix("{" + FHIR + "}") for c in name] == ["family", "given"]
    assert resource_from_xml(document) == resource


def test_choice_elements_keep_their_typed_name() -> None:
    resource = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                "effectiveDateTime": "2020-01-01", "valueString": "v"}
    document = resource_to_xml(resource)
    assert child_tags(document) == ["status", "code", "effectiveDateTime", "valueString"]
    assert resource_from_xml(document) == resource


def test_comments_processing_instructions_and_schema_location_are_ignored() -> None:
    document = (f'<?xml version="1.0"?><!-- a comment --><Patient xmlns="{FHIR}" '
                'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://hl7.org/fhir '
                '../../schema/patient.xsd"><?some-pi data?><id value="x"/><!-- another --><active value="true"/>'
                '\n  </Patient>').encode()
    assert resource_from_xml(document) == {"resourceType": "Patient", "id": "x", "active": True}


def test_fhir_namespace_with_a_prefix() -> None:
    document = (f'<f:Patient xmlns:f="{FHIR}"><f:active value="false"/><f:name><f:family value="f"/>'
                '<f:given value="a"/><f:given value="b"/></f:name></f:Patient>').encode()
    assert resource_from_xml(document) == {"resourceType": "Patient", "active": False,
                                           "name": [{"family": "f", "given": ["a", "b"]}]}


def test_empty_resource() -> None:
    both_ways({"resourceType": "Patient"}, f'{DECLARATION}<Patient xmlns="{FHIR}"/>'.encode())


def test_not_representable_resource_raises_value_error() -> None:
    with pytest.raises(ValueError, match=r"Patient\.foo"):
        resource_to_xml({"resourceType": "Patient", "foo": 1})
    with pytest.raises(ValueError, match="resourceType"):
        resource_to_xml({"resourceType": "Nope"})
    with pytest.raises(ValueError, match="U\\+FFFF"):
        resource_to_xml({"resourceType": "Patient", "name": [{"text": "\uffff"}]})


# -- refused XML -------------------------------------------------------------------------------------------------


REFUSED = {
    "not well-formed": (b"<Patient xmlns='http://hl7.org/fhir'><active value='true'></Patient>", "not well-formed",
                        None),
    "empty": (b"", "not well-formed", None),
    "DTD with an entity": (b'<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY x "boom">]>'
                           b'<Patient xmlns="http://hl7.org/fhir"><id value="&x;"/></Patient>', "DTD", None),
    "undefined entity": (xml(f'<text><status value="generated"/><div xmlns="{XHTML}">&nbsp;</div></text>'),
                         "undefined entity", None),
    "wrong root namespace": (b'<Patient xmlns="http://hl7.org/fhir/"><id value="x"/></Patient>', "FHIR namespace",
                             "Patient"),
    "no namespace": (b'<Patient><id value="x"/></Patient>', "FHIR namespace", "Patient"),
    "unknown resource type": (xml("", "Patient2"), "not an R4 resource type", "Patient2"),
    "abstract resource type": (xml("", "DomainResource"), "not an R4 resource type", "DomainResource"),
    "unknown element": (xml('<active value="true"/><foo value="x"/>'), "unknown element 'foo'", "Patient.foo"),
    "unknown nested element": (xml('<name/><name><given value="a"/><nickname value="b"/></name>'),
                               "unknown element 'nickname'", "Patient.name[1].nickname"),
    "element in another namespace": (xml('<active xmlns="urn:other" value="true"/>'), "unknown element 'active'",
                                     "Patient.active"),
    "JSON's resourceType as an element": (xml('<resourceType value="Patient"/>'), "unknown element",
                                          "Patient.resourceType"),
    "text in a complex element": (xml("<name>John Smith</name>"), "text content", "Patient.name[0]"),
    "text in a primitive element": (xml('<gender value="male">male</gender>'), "text content", "Patient.gender"),
    "text in the resource": (xml('hello<active value="true"/>'), "text content", "Patient"),
    "no-break space as text": (xml('<name>\u00a0</name>'), "text content", "Patient.name[0]"),
    "boolean 'yes'": (xml('<active value="yes"/>'), "'yes' is not a boolean", "Patient.active"),
    "integer '1.0'": (xml('<multipleBirthInteger value="1.0"/>'), "not an integer", "Patient.multipleBirthInteger"),
    "decimal '1,5'": (xml('<status value="final"/><code><text value="x"/></code><valueQuantity><value value="1,5"/>'
                          '</valueQuantity>', "Observation"), "not a decimal", "Observation.valueQuantity.value"),
    "decimal beyond Decimal128": (xml('<status value="final"/><code><text value="x"/></code><valueQuantity>'
                                      '<value value="1.00000000000000000000000000000000001"/></valueQuantity>',
                                      "Observation"), "cannot be stored exactly", "Observation.valueQuantity.value"),
    "primitive without value": (xml("<birthDate/>"), "needs a value attribute", "Patient.birthDate"),
    "unknown attribute": (xml('<birthDate valeu="1970"/>'), "unknown attribute 'valeu'", "Patient.birthDate"),
    "id attribute on the resource": (b'<Patient xmlns="http://hl7.org/fhir" id="x"/>', "resource's id is an element",
                                     "Patient"),
    "id element in a complex element": (xml('<name><id value="x"/></name>'), "attribute", "Patient.name[0].id"),
    "url element in an extension": (xml(f'<extension><url value="{EXT}"/></extension>'), "attribute",
                                    "Patient.extension[0].url"),
    # xml.html: "Elements must always appear in the order documented" (HL7's validator suite, list-wrong-order)
    "elements out of order": (xml('<gender value="male"/><active value="true"/>'), "must come before 'gender'",
                              "Patient.active"),
    "a repeating element interleaved": (xml('<name><given value="a"/><family value="f"/><given value="b"/></name>'),
                                        "must come before 'given'", "Patient.name[0].family"),
    "single element twice": (xml('<gender value="male"/><gender value="female"/>'), "more than once",
                             "Patient.gender"),
    "contained without a resource": (xml("<contained/>"), "exactly one resource", "Patient.contained[0]"),
    "contained datatype": (xml("<contained><HumanName/></contained>"), "not an R4 resource type",
                           "Patient.contained[0]"),
    "narrative div in the FHIR namespace": (xml('<text><status value="generated"/><div>x</div></text>'),
                                            "XHTML namespace", "Patient.text.div"),
    "non-extension in a primitive": (xml('<birthDate value="1970"><id value="x"/></birthDate>'),
                                     "unknown element 'id'", "Patient.birthDate.id"),
    "unsupported encoding": (b'<?xml version="1.0" encoding="utf-7"?><Patient xmlns="http://hl7.org/fhir"/>',
                             "cannot be read", None),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused(case: str) -> None:
    document, message, where = REFUSED[case]
    with pytest.raises(InvalidRequest) as caught:
        resource_from_xml(document)
    issue = caught.value.issues[0]
    assert caught.value.status == 400
    assert message in issue.diagnostics
    assert issue.expression == ((where,) if where else ())


def test_nesting_deeper_than_the_json_limit_is_refused() -> None:
    deep = '<extension url="u">' * 60 + '<valueString value="x"/>' + "</extension>" * 60
    with pytest.raises(InvalidRequest, match="nested deeper than 100 levels"):
        resource_from_xml(xml(deep))
    shallow = '<extension url="u">' * 20 + '<valueString value="x"/>' + "</extension>" * 20
    assert resource_from_xml(xml(shallow))["extension"][0]["url"] == "u"


def test_too_many_repetitions_are_refused() -> None:
    limits = fhirjson.JsonLimits(max_array_items=3)
    assert len(resource_from_xml(xml('<name/>' * 3), limits=limits)["name"]) == 3
    with pytest.raises(InvalidRequest, match="at most 3"):
        resource_from_xml(xml('<name/>' * 4), limits=limits)
