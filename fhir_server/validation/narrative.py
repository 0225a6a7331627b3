"""The XHTML of a narrative (https://hl7.org/fhir/R4/narrative.html#xhtml): what a resource's ``text.div`` may hold.

A narrative is shown to people by the clients of every center, so what it may carry is checked like any element:

- well-formed XML whose root is a ``div`` in the XHTML namespace (json.html: "an escaped string of XHTML", the
  namespace declared); no DTD and no entity declarations (``defusedxml`` refuses them: no entity expansion bomb);
- invariant txt-1: "only the basic html formatting elements and attributes described in chapters 7-11 (except
  section 4 of chapter 9) and 12 of the HTML 4.0 standard, <a> elements (either name or href), images and
  internally contained style attributes" (:data:`ELEMENTS`, :data:`ATTRIBUTES`); narrative.html adds that it
  "SHALL NOT contain a head, a body element, external stylesheet references, deprecated elements, scripts, forms,
  base/link/xlink, frames, iframes, objects or event related attributes (e.g. onClick)": none of those is allowed,
  and a link or image to a ``javascript:`` or ``vbscript:`` URL is a script too, as is a ``data:`` URL of anything
  but an image (an image SHOULD be embedded as a ``data:`` URL, narrative.html says);
- a paragraph holds inline content only (HTML 4.01 section 9.3.1: no ``p``, ``div``, list or table inside a
  ``p``), as HTML 4.0's DTD has it: a browser would close the paragraph and show another narrative;
- invariant txt-2: "some non-whitespace content" (text, or an image). This one is a warning
  (:func:`narrative_warnings`, with the write's other warnings): four of HL7's own R4 examples have an empty
  ``div``, and every official example must load unchanged.

Besides HTML 4.0's chapters, the font style elements ``b``, ``i``, ``tt``, ``big``, ``small`` and ``hr`` are allowed
(chapter 15, not deprecated): HL7's own examples use them, as does every narrative generator.
"""

from __future__ import annotations

import re
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from fhir_server.errors import Issue

XHTML = "http://www.w3.org/1999/xhtml"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

ELEMENTS = frozenset({
    "div", "span", "h1", "h2", "h3", "h4", "h5", "h6", "address",  # chapter 7 (no html, head, title, meta, body)
    "bdo",  # chapter 8
    "em", "strong", "dfn", "code", "samp", "kbd", "var", "cite", "abbr", "acronym", "blockquote", "q", "sub", "sup",
    "p", "br", "pre",  # chapter 9, without 9.4 (ins, del)
    "ul", "ol", "li", "dl", "dt", "dd",  # chapter 10 (no deprecated dir, menu)
    "table", "caption", "thead", "tfoot", "tbody", "colgroup", "col", "tr", "th", "td",  # chapter 11
    "a",  # chapter 12 (no link, base)
    "img", "map", "area",  # images, with their client-side maps
    "tt", "i", "b", "big", "small", "hr",  # chapter 15's font styles and rule
})
_EVERYWHERE = frozenset({"id", "class", "style", "title", "lang", "dir", XML_LANG})  # coreattrs, i18n
_CELLS = frozenset({"align", "char", "charoff", "valign"})
ATTRIBUTES: dict[str, frozenset[str]] = {
    "a": frozenset({"href", "name", "charset", "type", "hreflang", "rel", "rev", "shape", "coords", "accesskey",
                    "tabindex"}),
    "img": frozenset({"src", "alt", "longdesc", "height", "width", "usemap", "ismap"}),
    "map": frozenset({"name"}),
    "area": frozenset({"shape", "coords", "href", "nohref", "alt", "accesskey", "tabindex"}),
    "blockquote": frozenset({"cite"}), "q": frozenset({"cite"}),
    "table": frozenset({"summary", "width", "border", "frame", "rules", "cellspacing", "cellpadding"}),
    "col": frozenset({"span", "width"}) | _CELLS, "colgroup": frozenset({"span", "width"}) | _CELLS,
    "thead": _CELLS, "tbody": _CELLS, "tfoot": _CELLS, "tr": _CELLS,
    "td": frozenset({"abbr", "axis", "headers", "scope", "rowspan", "colspan"}) | _CELLS,
    "th": frozenset({"abbr", "axis", "headers", "scope", "rowspan", "colspan"}) | _CELLS,
}
# HTML 4.01's %block; elements among ELEMENTS (section 7.5.3 and the DTD's %block;, %heading;, %list;)
_BLOCKS = frozenset(f"{{{XHTML}}}{name}" for name in ("p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol",
                                                     "dl", "pre", "hr", "blockquote", "address", "table"))
_P = f"{{{XHTML}}}p"
_URLS = frozenset({"href", "src", "longdesc", "cite", "usemap"})
_IGNORED_IN_URL = re.compile(r"[\x00-\x20]+")  # browsers skip control characters and spaces in a scheme


def narrative_problem(div: str) -> str | None:
    """What makes ``div`` no valid narrative XHTML (the first thing found), or None."""
    try:
        root = fromstring(div, forbid_dtd=True)
    except DefusedXmlException:
        return "the narrative may not declare a DTD or entities"
    except ParseError as exc:
        return f"the narrative is not well-formed XHTML ({exc})"
    if root.tag != f"{{{XHTML}}}div":
        return f"the narrative must be a div in the XHTML namespace ({XHTML}), not {_name(root.tag)}"
    for element in root.iter():
        problem = _element_problem(element) or (_paragraph_problem(element) if element.tag == _P else None)
        if problem:
            return problem
    return None


def _paragraph_problem(paragraph: Element) -> str | None:
    """HTML 4.01 section 9.3.1 (chapter 9, which txt-1 names): a P "cannot contain block-level elements (including P
    itself)". A browser closes the paragraph at the inner block, so the narrative a center reads is not the one
    that was written."""
    for inner in paragraph.iter():
        if inner is not paragraph and inner.tag in _BLOCKS:
            return f"the narrative's <p> may not contain a <{_name(inner.tag)}> (a paragraph holds inline content only)"
    return None


def narrative_warnings(resource: dict[str, Any]) -> list[Issue]:
    """txt-2 of the resource's narrative and of its contained resources' (the walk already checked each ``div``
    is well-formed: one that is not is left to that error)."""
    kind = resource.get("resourceType")
    found = [(f"{kind}.text.div", resource.get("text"))]
    contained = resource.get("contained")
    if isinstance(contained, list):
        found += [(f"{kind}.contained[{i}].text.div", r.get("text")) for i, r in enumerate(contained)
                  if isinstance(r, dict)]
    issues = []
    for path, text in found:
        div = text.get("div") if isinstance(text, dict) else None
        if isinstance(div, str) and _without_content(div):
            issues.append(Issue("warning", "invariant", "txt-2: the narrative SHALL have some non-whitespace "
                                "content (text or an image)", (path,)))
    return issues


def _without_content(div: str) -> bool:
    try:
        root = fromstring(div, forbid_dtd=True)
    except (DefusedXmlException, ParseError):
        return False
    return not "".join(root.itertext()).strip() and root.find(f".//{{{XHTML}}}img") is None


def _element_problem(element: Element) -> str | None:
    namespace, _, name = element.tag[1:].partition("}") if element.tag.startswith("{") else ("", "", element.tag)
    if namespace != XHTML or name not in ELEMENTS:
        return f"the narrative may not contain a <{_name(element.tag)}> element (txt-1: basic HTML formatting only)"
    allowed = ATTRIBUTES.get(name, frozenset())
    for attribute, value in element.attrib.items():
        if attribute not in _EVERYWHERE and attribute not in allowed:
            return f"the narrative's <{name}> may not have the attribute {_name(attribute)} (txt-1)"
        if attribute in _URLS and _active_url(value):
            return f"the narrative's <{name}> {attribute} may not be a script URL"
    return None


def _active_url(value: str) -> bool:
    url = _IGNORED_IN_URL.sub("", value).lower()
    return url.startswith(("javascript:", "vbscript:")) or (url.startswith("data:")
                                                            and not url.startswith("data:image/"))


def _name(tag: str) -> str:
    """``{namespace}local`` as ``local`` (in ``namespace``) for messages; an XHTML name as its local name."""
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return local if namespace == XHTML else f"{local} (in {namespace})"
    return tag
