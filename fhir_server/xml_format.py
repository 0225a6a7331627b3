"""FHIR R4 XML (https://hl7.org/fhir/R4/xml.html) to and from FHIR JSON as Python dicts.

:func:`resource_to_xml` writes a resource dict (as parsed by :func:`fhir_server.fhirjson.loads`) as XML;
:func:`resource_from_xml` reads XML back into the same dict, so that for every valid R4 resource ``R``,
``resource_from_xml(resource_to_xml(R)) == R``. The mapping follows xml.html:

- the root element is named after ``resourceType`` in the namespace ``http://hl7.org/fhir``;
- a primitive is an element with a ``value`` attribute; its ``Element.id`` is an ``id`` attribute and its
  extensions are child elements: JSON's ``_name`` sibling (json.html#primitive), with ``null`` place holders in
  the arrays of repeating primitives;
- ``Element.id`` of a complex element and ``Extension.url`` are XML attributes; a resource's own ``id`` is a
  child element;
- a resource inside a resource (``contained``, ``Bundle.entry.resource``, ...) is wrapped in an element named
  after its type;
- the narrative's ``div`` is XHTML markup in the XHTML namespace, a string in JSON.

Element order. XML orders elements as the type's StructureDefinition does. The order comes from the server's
element table, :data:`fhir_server.validation.primitives.TYPES`: its ``rows`` are built by
``scripts/build_snapshots.py`` walking each snapshot in order, so they are in definition order (checked for
all 660 type keys against the snapshots of :func:`fhir_server.validation.core.core_definitions`). Choice
elements appear there expanded (``valueQuantity``, ``valueString``...) next to each other, at the place of
``value[x]``; backbone elements are keyed by their path (``Patient.contact``).

What it does not do. It judges no value beyond what converting needs (``boolean``, the integer types and
``decimal`` become Python values and must therefore be well-formed; everything else stays a string): the
server's JSON validation judges the result. Element order is enforced on input as on output (xml.html: "Elements
must always appear in the order documented"; an element out of order, or one name interleaved with others, is a 400
naming it); a single-valued element given twice is refused. It writes no XML comments,
and ignores comments and processing instructions on input. No DTD, no entity declaration is accepted
(``defusedxml``). An ``xsi:schemaLocation`` attribute (HL7's own XML examples carry one) is ignored.

Narratives. A ``div`` is kept character for character when it can be: a JSON ``div`` that is exactly one
``<div xmlns=...>`` element is embedded in the XML as written, and reading XML gives back the ``div``'s markup as
written in the input when that markup stands on its own (checked by parsing it alone: same tree). Otherwise
(a ``div`` relying on namespace prefixes declared further up, a JSON string with an XML declaration or a
comment after the element...) the markup is written anew, normalised: the XHTML namespace as the default
namespace (no prefixes), ``<x/>`` for an element without content, attribute values in double quotes,
``& < >`` escaped in text and ``& < > "`` (and tab, CR, LF) in attribute values, comments dropped. HL7's R4
examples use both ``<td/>`` and ``<td></td>``, and carriage returns: only keeping the markup as written
round-trips all of them exactly.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from fhir_server import fhirjson
from fhir_server.errors import InvalidRequest
from fhir_server.fhirjson import DEFAULT_LIMITS, JsonLimits
from fhir_server.validation.primitives import COMPLEX, PRIMITIVE, RESOURCE, RESOURCE_TYPES, TYPES, Row

__all__ = ["FHIR_NAMESPACE", "XHTML_NAMESPACE", "resource_from_xml", "resource_to_xml"]

FHIR_NAMESPACE = "http://hl7.org/fhir"
XHTML_NAMESPACE = "http://www.w3.org/1999/xhtml"
_XML_NAMESPACE = "http://www.w3.org/XML/1998/namespace"
_FHIR = "{" + FHIR_NAMESPACE + "}"
_XHTML = "{" + XHTML_NAMESPACE + "}"
_XHTML_DIV = _XHTML + "div"
_EXTENSION = _FHIR + "extension"
_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
# Attributes of no meaning to FHIR that schema-aware tools put on the root (HL7's own XML examples do).
_IGNORED_ATTRIBUTES = frozenset({"{http://www.w3.org/2001/XMLSchema-instance}schemaLocation"})
_RESOURCE_TYPES = frozenset(RESOURCE_TYPES)  # the concrete R4 resource types (not Resource, DomainResource)
_INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt"})


# -- per-type layout, computed once per type key -----------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """How the elements of one type (a key of ``TYPES``) are laid out in XML."""

    rows: dict[str, Row]
    names: tuple[str, ...]  # element names in definition order
    position: dict[str, int]  # JSON property (``name`` and, for primitives, ``_name``) -> index in ``names``
    attributes: tuple[str, ...]  # elements written as XML attributes: Element.id, Extension.url
    skipped: frozenset[str]  # JSON properties that are no child element (the attributes, resourceType)


@functools.cache
def _layout(type_key: str) -> _Layout:
    info = TYPES[type_key]
    # xml.html: Element.id and Extension.url are attributes; Resource.id is an element like any other.
    attributes = () if info.is_resource else ("id", "url") if type_key == "Extension" else ("id",)
    names = tuple(name for name in info.rows if name not in attributes)
    position: dict[str, int] = {}
    for index, name in enumerate(names):
        position[name] = index
        row = info.rows[name]
        if row.kind == PRIMITIVE and row.target != "xhtml":  # XML has no place for a div's id or extensions
            position["_" + name] = index
    skipped = frozenset(("resourceType",) if info.is_resource else attributes)
    return _Layout(info.rows, names, position, attributes, skipped)


# -- JSON -> XML -------------------------------------------------------------------------------------------------


def resource_to_xml(resource: dict[str, Any], *, pretty: bool = False) -> bytes:
    """``resource`` (FHIR JSON as parsed by ``fhirjson.loads``) as FHIR XML, UTF-8, indented if ``pretty``.

    Raises ValueError for a dict that is no resource this module can write (an unknown element, a value of the
    wrong shape, a narrative that is not XHTML, a character XML 1.0 cannot carry): valid resources have none.
    """
    writer = _Writer(pretty)
    writer.line(0, _DECLARATION)
    writer.resource(resource, 0, f' xmlns="{FHIR_NAMESPACE}"')
    text = "".join(writer.parts)
    bad = _NOT_XML_CHARACTER.search(text)
    if bad is not None:
        raise ValueError(f"The character U+{ord(bad.group()):04X} cannot be written in XML 1.0")
    return text.encode("utf-8")


# Characters XML 1.0 cannot hold, not even as character references (XML 1.0 section 2.2). FHIR strings refuse
# most of them (datatypes.html#string) but not U+FFFE and U+FFFF.
_NOT_XML_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
# In attribute values, tab, CR and LF must be character references: the parser turns literal ones into spaces.
_ATTRIBUTE_SPECIAL = re.compile('[&<>"\t\n\r]')
_ATTRIBUTE_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\t": "&#9;", "\n": "&#10;",
                      "\r": "&#13;"}
_TEXT_SPECIAL = re.compile("[&<>\r]")
_TEXT_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"}  # a literal CR would be read as LF


def _escape_attribute(text: str) -> str:
    if _ATTRIBUTE_SPECIAL.search(text) is None:  # the common case: nothing to replace
        return text
    return _ATTRIBUTE_SPECIAL.sub(lambda m: _ATTRIBUTE_ESCAPES[m.group()], text)


def _escape_text(text: str) -> str:
    if _TEXT_SPECIAL.search(text) is None:
        return text
    return _TEXT_SPECIAL.sub(lambda m: _TEXT_ESCAPES[m.group()], text)


def _value_text(value: Any, where: str) -> str:
    """A primitive's JSON value as the text of its ``value`` attribute."""
    if isinstance(value, bool):  # before int: True is an int
        return "true" if value else "false"
    if isinstance(value, str):
        return _escape_attribute(value)
    if isinstance(value, int | Decimal):
        return str(value)  # a Decimal keeps its digits and exponent: 1.00 stays 1.00, 1E+2 stays 1E+2
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return repr(value)  # fhirjson gives Decimals; a float from elsewhere is written as Python (and JSON) would
    raise ValueError(f"{where}: a primitive cannot hold {type(value).__name__} {str(value)[:40]!r}")


class _Writer:
    """Collects the XML text of one resource, one element per line when ``pretty``."""

    def __init__(self, pretty: bool) -> None:
        self.parts: list[str] = []
        self.pretty = pretty

    def line(self, depth: int, text: str) -> None:
        self.parts.append(f"{'  ' * depth}{text}\n" if self.pretty else text)

    def resource(self, resource: Any, depth: int, attributes: str = "") -> None:
        """A resource as the element named after its type (``attributes``: the root's namespace declaration)."""
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        if kind not in _RESOURCE_TYPES:
            raise ValueError(f"Not a resource: resourceType {kind!r} is no R4 resource type")
        self.element(kind, resource, _layout(kind), kind, depth, attributes)

    def element(self, name: str, obj: Any, layout: _Layout, where: str, depth: int, attributes: str = "") -> None:
        """``obj`` (a resource or a complex value) as the element ``name``."""
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: a {name} must be a JSON object, not {type(obj).__name__}")
        for attribute in layout.attributes:
            if attribute in obj:
                attributes += f' {attribute}="{_value_text(obj[attribute], where)}"'
        names = self.ordered(obj, layout, where)
        if not names:
            self.line(depth, f"<{name}{attributes}/>")
            return
        self.line(depth, f"<{name}{attributes}>")
        for child in names:
            self.child(obj, child, layout.rows[child], where, depth + 1)
        self.line(depth, f"</{name}>")

    @staticmethod
    def ordered(obj: dict[str, Any], layout: _Layout, where: str) -> list[str]:
        """The element names of ``obj`` in definition order (``name`` and ``_name`` once)."""
        try:
            indexes = {layout.position[key] for key in obj if key not in layout.skipped}
        except KeyError:
            unknown = next(k for k in obj if k not in layout.skipped and k not in layout.position)
            raise ValueError(f"{where}.{unknown}: not an element XML can carry here") from None
        return [layout.names[index] for index in sorted(indexes)]

    def child(self, obj: dict[str, Any], name: str, row: Row, where: str, depth: int) -> None:
        if row.kind == PRIMITIVE:
            if row.target == "xhtml":
                self.line(depth, _div_markup(obj[name], f"{where}.{name}"))
            elif row.is_array:
                self.primitives(name, obj.get(name), obj.get("_" + name), where, depth)
            else:
                self.primitive(name, obj.get(name), obj.get("_" + name), where, depth)
            return
        items = _items(obj[name], row, f"{where}.{name}")
        if row.kind == RESOURCE:
            for item in items:
                self.line(depth, f"<{name}>")
                self.resource(item, depth + 1)
                self.line(depth, f"</{name}>")
        else:
            layout = _layout(row.target)
            for item in items:
                self.element(name, item, layout, row.target, depth)

    def primitives(self, name: str, values: Any, extras: Any, where: str, depth: int) -> None:
        """A repeating primitive: ``values`` and ``extras`` (the ``_name`` array) are aligned."""
        if not isinstance(values, list | None) or not isinstance(extras, list | None) or (
                values is not None and extras is not None and len(values) != len(extras)):
            raise ValueError(f"{where}.{name}: {name} and _{name} must be arrays of one length")
        count = len(values) if values is not None else len(extras or ())
        for value, extra in zip(values or [None] * count, extras or [None] * count, strict=True):
            self.primitive(name, value, extra, where, depth)

    def primitive(self, name: str, value: Any, extra: Any, where: str, depth: int) -> None:
        """``<name id=".." value="..">`` with the extensions of ``extra`` (the JSON ``_name`` object)."""
        if extra is not None and (not isinstance(extra, dict) or not extra.keys() <= {"id", "extension"}):
            raise ValueError(f"{where}._{name}: holds only an id and extensions")
        if value is None and not extra:
            raise ValueError(f"{where}.{name}: neither a value nor an id or extensions")
        attributes = f' id="{_value_text(extra["id"], where)}"' if extra and "id" in extra else ""
        if value is not None:
            attributes += f' value="{_value_text(value, f"{where}.{name}")}"'
        extensions = extra.get("extension") if extra else None
        if not isinstance(extensions, list | None):
            raise ValueError(f"{where}._{name}: extension must be an array")
        if not extensions:
            self.line(depth, f"<{name}{attributes}/>")
            return
        self.line(depth, f"<{name}{attributes}>")
        layout = _layout("Extension")
        for extension in extensions:
            self.element("extension", extension, layout, "Extension", depth + 1)
        self.line(depth, f"</{name}>")


def _items(value: Any, row: Row, where: str) -> list[Any]:
    if not row.is_array:
        return [value]
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{where}: must be an array")
    return value


def _div_markup(div: Any, where: str) -> str:
    """The XML of a narrative ``div`` given as a JSON string: the string itself when it is exactly one XHTML
    ``div`` element (kept as written), otherwise the parsed element written anew."""
    if not isinstance(div, str):
        raise ValueError(f"{where}: must be a string of XHTML")
    try:
        data = div.encode("utf-8")
        root, spans = _parse(data)
    except (UnicodeEncodeError, ParseError, DefusedXmlException) as exc:
        raise ValueError(f"{where}: the narrative is not well-formed XHTML ({exc})") from None
    if root.tag != _XHTML_DIV:
        raise ValueError(f"{where}: the narrative must be a div in the XHTML namespace ({XHTML_NAMESPACE})")
    # Anything around the element (an XML declaration, a comment after it) could not stand inside the document.
    return div if _element_bytes(data, root, spans[root]) == data else _markup(root)


# -- parsing, and the narrative's markup ----------------------------------------------------------------------


class _SpanBuilder:
    """An ElementTree builder that also notes where each outermost XHTML element starts and ends in the input:
    a narrative ``div`` is read back as written there (see the module docstring)."""

    def __init__(self) -> None:
        self._builder = TreeBuilder()
        self.data = self._builder.data  # the C method itself: no Python call per text chunk
        self.expat: Any = None  # set once the parser exists: its position is read in start() and end()
        self.spans: dict[Element, tuple[int, int]] = {}
        self._depth = 0  # XHTML nesting depth (0: outside any XHTML element)
        self._start = 0

    def start(self, tag: str, attrib: dict[str, str]) -> Element:
        if self._depth:
            self._depth += 1
        elif tag.startswith(_XHTML):
            self._depth = 1
            self._start = self.expat.CurrentByteIndex
        return self._builder.start(tag, attrib)

    def end(self, tag: str) -> Element:
        element = self._builder.end(tag)
        if self._depth:
            self._depth -= 1
            if not self._depth:
                self.spans[element] = (self._start, self.expat.CurrentByteIndex)
        return element

    def close(self) -> Element:
        return self._builder.close()


def _parse(data: bytes) -> tuple[Element, dict[Element, tuple[int, int]]]:
    """The element tree of ``data`` and the spans of its outermost XHTML elements. No DTD, no entities; comments
    and processing instructions are dropped (the builder has no handler for them)."""
    builder = _SpanBuilder()
    parser = DefusedXMLParser(target=builder, forbid_dtd=True)
    builder.expat = parser.parser
    parser.feed(data)
    return parser.close(), builder.spans


def _element_bytes(data: bytes, element: Element, span: tuple[int, int]) -> bytes:
    """The bytes of ``element`` in ``data``, from the positions expat gave at its start and end events."""
    start, end = span
    # At the end event of an empty-element tag (<div/>) expat is already past the tag; at the end event of an end
    # tag it is at its "<" (verified by the callers: a wrong slice does not parse, or not to the same tree).
    if element.text is None and not len(element) and data[end - 2:end] == b"/>":
        return data[start:end]
    close = data.find(b">", end)
    return data[start:close + 1] if close >= 0 else b""


def _verbatim(data: bytes, element: Element, span: tuple[int, int]) -> str | None:
    """The markup of an XHTML ``div`` as written in ``data``, if it stands on its own: a ``div`` with the XHTML
    namespace declared on it (no prefix) that, parsed alone, gives the same tree. None otherwise."""
    raw = _element_bytes(data, element, span)
    if not raw.startswith(b"<div") or raw[4:5] not in (b" ", b"\t", b"\r", b"\n", b">", b"/"):
        return None
    try:
        text = raw.decode("utf-8")  # a document in another encoding: a wrong decoding parses to another tree
        alone, _ = _parse(raw)
    except (UnicodeDecodeError, ParseError, DefusedXmlException):
        return None
    return text if _same_tree(element, alone) else None


def _same_tree(first: Element, second: Element) -> bool:
    """Same names, attributes, text and children (iterative: a narrative may be nested deeply)."""
    pairs = [(first, second)]
    while pairs:
        a, b = pairs.pop()
        if a.tag != b.tag or a.attrib != b.attrib or a.text != b.text or len(a) != len(b):
            return False
        for x, y in zip(a, b, strict=True):
            if x.tail != y.tail:
                return False
            pairs.append((x, y))
    return True


def _split(tag: str) -> tuple[str, str]:
    """``{namespace}name`` as (namespace, name); a name in no namespace has the namespace ``""``."""
    if tag.startswith("{"):
        namespace, _, name = tag[1:].partition("}")
        return namespace, name
    return "", tag


def _markup(root: Element) -> str:
    """The XHTML of ``root`` written anew: the namespace of every element as the default namespace (declared
    where it changes), ``<x/>`` for an element without content. Iterative: a narrative may be nested deeply."""
    out: list[str] = []
    todo: list[tuple[Element, str | None] | str] = [(root, None)]
    while todo:
        item = todo.pop()
        if isinstance(item, str):  # an end tag and the text after it
            out.append(item)
            continue
        element, default = item
        namespace, name = _split(element.tag)
        head = f"<{name}"
        if namespace != default:
            head += f' xmlns="{_escape_attribute(namespace)}"'
        head += _markup_attributes(element.attrib)
        tail = _escape_text(element.tail) if element.tail and element is not root else ""
        if not element.text and not len(element):
            out.append(f"{head}/>{tail}")
            continue
        out.append(f"{head}>{_escape_text(element.text or '')}")
        todo.append(f"</{name}>{tail}")
        todo.extend((child, namespace) for child in reversed(element))
    return "".join(out)


def _markup_attributes(attrib: dict[str, str]) -> str:
    text = ""
    prefixes: dict[str, str] = {}
    for key, value in attrib.items():
        namespace, name = _split(key)
        if namespace == _XML_NAMESPACE:
            name = f"xml:{name}"  # the xml prefix is bound everywhere, and xml:lang is what narratives use
        elif namespace:  # any other namespaced attribute gets a prefix declared on its element
            prefix = prefixes.setdefault(namespace, f"ns{len(prefixes)}")
            name = f"{prefix}:{name}"
        text += f' {name}="{_escape_attribute(value)}"'
    return text + "".join(f' xmlns:{p}="{_escape_attribute(ns)}"' for ns, p in prefixes.items())


# -- XML -> JSON -------------------------------------------------------------------------------------------------


def resource_from_xml(data: bytes, *, limits: JsonLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The FHIR JSON dict of the resource in ``data`` (FHIR XML): decimals as exact ``Decimal``, integer types
    as ``int``, booleans as ``bool``, other primitives as strings.

    Raises InvalidRequest (400) when ``data`` is not well-formed, declares a DTD or entities, or is not FHIR XML
    (see the module docstring for what is not judged here); ``limits`` bounds nesting and repetitions as
    ``fhirjson.loads`` does for JSON (XML nests at most as deeply as the JSON it becomes)."""
    data = bytes(data)
    try:
        root, spans = _parse(data)
    except DefusedXmlException:
        raise InvalidRequest("The XML may not declare a DTD or entities", code="structure") from None
    except ParseError as exc:
        raise InvalidRequest(f"The XML is not well-formed: {exc}", code="structure") from None
    except (LookupError, ValueError) as exc:  # an encoding expat does not read (multi-byte, unknown)
        raise InvalidRequest(f"The XML cannot be read: {str(exc)[:200]}", code="structure") from None
    namespace, kind = _split(root.tag)
    if namespace != FHIR_NAMESPACE:
        raise _invalid(f"the root element must be in the FHIR namespace ({FHIR_NAMESPACE}), not "
                       f"{_namespace_name(namespace)}", kind)
    if kind not in _RESOURCE_TYPES:
        raise _invalid(f"'{kind}' is not an R4 resource type", kind)
    return _Reader(data, spans, limits).resource(root, kind, kind, 1)


def _invalid(message: str, where: str, code: str = "structure") -> InvalidRequest:
    return InvalidRequest(f"{where}: {message}", code=code, expression=(where,))


def _namespace_name(namespace: str) -> str:
    return namespace or "no namespace"


class _ValueError(Exception):
    """A primitive's value attribute that cannot become its JSON value (only while naming its element)."""


def _boolean(text: str) -> bool:
    if text == "true":
        return True
    if text == "false":
        return False
    raise _ValueError(f"'{text[:40]}' is not a boolean (true or false)")


_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)", re.ASCII)
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?", re.ASCII)  # a JSON number


def _integer(text: str) -> int:
    if _INTEGER.fullmatch(text) is None:
        raise _ValueError(f"'{text[:40]}' is not an integer (digits, an optional minus sign, no leading zero)")
    try:
        return int(text)
    except ValueError:  # more digits than Python converts (4,300): far out of any FHIR integer's range
        raise _ValueError(f"'{text[:40]}...' is not an integer in range") from None


def _decimal(text: str) -> Decimal | int:
    """What the same number gives in JSON (``fhirjson.loads``): ``1.00`` -> ``Decimal("1.00")``, ``1E+2`` ->
    ``Decimal("1E+2")``, and ``100`` -> ``100`` (an int, as JSON's ``100`` is: the round trip keeps the types),
    refused if BSON's Decimal128 cannot store it exactly, as from JSON."""
    if _DECIMAL.fullmatch(text) is None:
        raise _ValueError(f"'{text[:40]}' is not a decimal (a JSON number)")
    try:
        value: Decimal | int = fhirjson.loads(text)  # the regex admits JSON numbers only
    except InvalidRequest as exc:
        raise _ValueError(str(exc)) from None
    return value


def _string(text: str) -> str:
    return text


# The primitive types whose JSON value is no string (json.html#primitive).
_CONVERTERS: dict[str, Callable[[str], Any]] = {"boolean": _boolean, "decimal": _decimal,
                                                **dict.fromkeys(_INTEGER_TYPES, _integer)}


class _Reader:
    """Turns the element tree of one FHIR XML document into FHIR JSON.

    ``where`` arguments are FHIRPath-like locations (``Patient.name[1].given[0]``), built for complex elements
    only (a primitive's location is built when there is an error to report). ``depth`` is the nesting depth of
    the JSON being built, counted as ``fhirjson`` counts it (an array and its objects are a level each), so that
    ``limits`` mean for XML what they mean for JSON."""

    def __init__(self, data: bytes, spans: dict[Element, tuple[int, int]], limits: JsonLimits) -> None:
        self.data = data
        self.spans = spans
        self.limits = limits

    def resource(self, element: Element, kind: str, where: str, depth: int) -> dict[str, Any]:
        for attribute in element.attrib:
            if attribute not in _IGNORED_ATTRIBUTES:
                hint = " (a resource's id is an element: <id value=\"...\"/>)" if attribute == "id" else ""
                raise _invalid(f"unknown attribute '{_local(attribute)}'{hint}", where)
        return self.fields(element, _layout(kind), {"resourceType": kind}, where, depth)

    def complex(self, element: Element, type_key: str, where: str, depth: int) -> dict[str, Any]:
        layout = _layout(type_key)
        obj: dict[str, Any] = {}
        for attribute, value in element.attrib.items():
            if attribute in layout.attributes:  # Element.id, Extension.url: strings
                obj[attribute] = value
            elif attribute not in _IGNORED_ATTRIBUTES:
                raise _invalid(f"unknown attribute '{_local(attribute)}'", where)
        return self.fields(element, layout, obj, where, depth)

    def fields(self, element: Element, layout: _Layout, obj: dict[str, Any], where: str,
               depth: int) -> dict[str, Any]:
        """The child elements of ``element`` into ``obj`` (the JSON object at ``depth``), in document order."""
        if depth > self.limits.max_depth:
            raise _invalid(f"the resource is nested deeper than {self.limits.max_depth} levels (as JSON)", where)
        _no_text(element.text, where)
        counts: dict[str, int] = {}  # repeating elements: how many so far
        repeated: dict[str, list[tuple[Any, dict[str, Any] | None]]] = {}  # repeating primitives: (value, _value)
        previous = ""  # the element before, and its place in the definition
        reached = -1
        for child in element:
            _no_text(child.tail, where)
            name, row = _row(child, layout, where)
            # xml.html: "Elements must always appear in the order documented"; a reader that took them in any
            # order would accept documents no other FHIR XML reader (schema-based ones) can read
            place = layout.position[name]
            if place < reached:
                raise _invalid(f"'{name}' must come before '{previous}' (xml.html: elements appear in the order "
                               "of their definition)", f"{where}.{name}")
            previous, reached = name, place
            index: int | None = None
            if row.is_array:
                index = counts.get(name, 0)
                counts[name] = index + 1
            elif name in obj or "_" + name in obj:
                raise _invalid("appears more than once (max 1)", f"{where}.{name}")
            inner = depth + 2 if row.is_array else depth + 1  # JSON: [ {...} ] or {...}
            if row.kind != PRIMITIVE or row.target == "xhtml":
                item = self.value(child, row, _at(where, name, index), inner)
                if index is None:
                    obj[name] = item
                else:
                    obj.setdefault(name, []).append(item)
                continue
            value, extra = self.primitive(child, row, where, name, index, inner)
            if index is None:
                if value is not None:
                    obj[name] = value
                if extra is not None:
                    obj["_" + name] = extra
            else:
                if name not in repeated:  # keep the place of the first one in the JSON object
                    obj[name] = obj["_" + name] = None
                repeated.setdefault(name, []).append((value, extra))
        self.check_repetitions(counts, where)
        for name, items in repeated.items():
            _align(obj, name, items)
        return obj

    def value(self, element: Element, row: Row, where: str, depth: int) -> Any:
        """The JSON value of a narrative, a resource or a complex element."""
        if row.kind == RESOURCE:
            return self.contained(element, where, depth)
        if row.kind == COMPLEX:
            return self.complex(element, row.target, where, depth)
        span = self.spans.get(element)  # xhtml: the div as written, if it stands on its own
        return (span and _verbatim(self.data, element, span)) or _markup(element)

    def check_repetitions(self, counts: dict[str, int], where: str) -> None:
        for name, count in counts.items():
            if count > self.limits.max_array_items:
                raise InvalidRequest(f"{where}.{name}: {count} elements; at most {self.limits.max_array_items} are "
                                     "accepted", code="too-costly", expression=(f"{where}.{name}",))

    def primitive(self, element: Element, row: Row, parent: str, name: str, index: int | None,
                  depth: int) -> tuple[Any, dict[str, Any] | None]:
        """(JSON value or None, the ``_name`` object at ``depth`` or None) of ``<name id=".." value="..">``."""
        text: str | None = None
        extra: dict[str, Any] = {}
        for attribute, value in element.attrib.items():
            if attribute == "value":
                text = value
            elif attribute == "id":
                extra["id"] = value
            elif attribute not in _IGNORED_ATTRIBUTES:
                raise _invalid(f"unknown attribute '{_local(attribute)}'", _at(parent, name, index))
        if len(element) or element.text:
            extra.update(self.primitive_extensions(element, _at(parent, name, index), depth))
        if text is None:
            if not extra:
                raise _invalid("a primitive element needs a value attribute, an id or extensions",
                               _at(parent, name, index))
            return None, extra
        try:
            return _CONVERTERS.get(row.target, _string)(text), extra or None
        except _ValueError as exc:
            raise _invalid(str(exc), _at(parent, name, index), code="value") from None

    def primitive_extensions(self, element: Element, where: str, depth: int) -> dict[str, Any]:
        """``{"extension": [...]}`` of a primitive element (at ``depth``), or nothing."""
        _no_text(element.text, where)
        extensions: list[dict[str, Any]] = []
        for child in element:
            _no_text(child.tail, where)
            if child.tag != _EXTENSION:  # a primitive holds its value, an id and extensions only
                raise _invalid(f"unknown element '{_local(child.tag)}'", f"{where}.{_local(child.tag)}")
            extensions.append(self.complex(child, "Extension", f"{where}.extension[{len(extensions)}]", depth + 2))
        self.check_repetitions({"extension": len(extensions)}, where)
        return {"extension": extensions} if extensions else {}

    def contained(self, element: Element, where: str, depth: int) -> dict[str, Any]:
        """``<contained><Organization>...</Organization></contained>``: the one resource inside."""
        for attribute in element.attrib:
            if attribute not in _IGNORED_ATTRIBUTES:
                raise _invalid(f"unknown attribute '{_local(attribute)}'", where)
        _no_text(element.text, where)
        if len(element) != 1:
            raise _invalid(f"must hold exactly one resource, not {len(element)} elements", where)
        inner = element[0]
        _no_text(inner.tail, where)
        namespace, kind = _split(inner.tag)
        if namespace != FHIR_NAMESPACE or kind not in _RESOURCE_TYPES:
            in_namespace = "" if namespace == FHIR_NAMESPACE else f" in {_namespace_name(namespace)}"
            raise _invalid(f"'{kind}'{in_namespace} is not an R4 resource type", where)
        return self.resource(inner, kind, where, depth)


def _at(parent: str, name: str, index: int | None) -> str:
    """The location of an element: ``Patient.name[0]`` for a repeating one, ``Patient.gender`` otherwise."""
    return f"{parent}.{name}" if index is None else f"{parent}.{name}[{index}]"


def _row(child: Element, layout: _Layout, where: str) -> tuple[str, Row]:
    """The element name and row of a child element; an unknown element is an error."""
    tag = child.tag
    if tag.startswith(_FHIR):
        name = tag[len(_FHIR):]
        row = layout.rows.get(name)
        if row is not None and name not in layout.attributes and row.target != "xhtml":
            return name, row
        if name in layout.attributes:
            raise _invalid(f"'{name}' is an attribute of its element here, not a child element", f"{where}.{name}")
        if row is not None:
            raise _invalid(f"the narrative must be a div in the XHTML namespace ({XHTML_NAMESPACE})",
                           f"{where}.{name}")
    elif tag == _XHTML_DIV:
        row = layout.rows.get("div")
        if row is not None and row.target == "xhtml":
            return "div", row
    namespace, name = _split(tag)
    in_namespace = "" if namespace == FHIR_NAMESPACE else f" (in {_namespace_name(namespace)})"
    raise _invalid(f"unknown element '{name}'{in_namespace}", f"{where}.{name}")


def _no_text(text: str | None, where: str) -> None:
    # XML's white space only (str.isspace would also pass a no-break space, which is content)
    if text and text.strip(" \t\r\n"):
        raise _invalid(f"text content is not allowed here ('{text.strip()[:40]}'): FHIR XML puts values in value "
                       "attributes", where)


def _local(tag: str) -> str:
    namespace, name = _split(tag)
    return f"{name} (in {namespace})" if namespace and namespace != FHIR_NAMESPACE else name


def _align(obj: dict[str, Any], name: str, items: list[tuple[Any, dict[str, Any] | None]]) -> None:
    """A repeating primitive as JSON: ``name`` with null where an item has no value, ``_name`` with null where an
    item has no id or extensions; each array left out when it would hold only nulls (json.html#primitive)."""
    values = [value for value, _ in items]
    extras = [extra for _, extra in items]
    for key, array in ((name, values), ("_" + name, extras)):
        if any(item is not None for item in array):
            obj[key] = array
        else:
            del obj[key]
