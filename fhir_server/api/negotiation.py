"""Content negotiation (https://hl7.org/fhir/R4/http.html#mime-type): FHIR JSON and FHIR XML
(https://hl7.org/fhir/R4/xml.html, converted by ``fhir_server.xml_format``), both ways; JSON when the client
states no preference. The format chosen for a request is kept in its scope (:data:`MEDIA_TYPE_KEY`), so that
its errors are written in it too.

The ``fhirVersion`` media-type parameter (http.html#version-parameter) names the FHIR release of the content:
this server has R4's (``4.0``, or ``4.0.1``), so an ``Accept`` range naming another release is not acceptable
(406 when no other range is) and a body declared as another release is a 415."""

from __future__ import annotations

import zlib
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fhir_server import fhirjson
from fhir_server.errors import InvalidRequest, NotAcceptable, PayloadTooLarge, UnsupportedMediaType
from fhir_server.settings import Settings
from fhir_server.xml_format import resource_from_xml, resource_to_xml

FHIR_JSON = "application/fhir+json"
FHIR_XML = "application/fhir+xml"
FHIR_FORMATS = (FHIR_JSON, FHIR_XML)  # the first: when the client states no preference
JSON_PATCH = "application/json-patch+json"
_JSON_TYPES = {FHIR_JSON, "application/json", "application/json+fhir", "json", "text/json"}
_XML_TYPES = {FHIR_XML, "application/xml", "application/xml+fhir", "xml", "text/xml"}
_FORMAT_ALIASES = {**dict.fromkeys(_JSON_TYPES, FHIR_JSON), **dict.fromkeys(_XML_TYPES, FHIR_XML)}
MEDIA_TYPE_KEY = "fhir.media_type"  # the request scope's record of the format negotiated


FHIR_VERSIONS = frozenset({"4.0", "4.0.1"})  # the fhirVersion values of R4 content


def _parameters(pieces: list[str]) -> dict[str, str]:
    """``name=value`` parameters of a media type (names lower-cased, quotes removed)."""
    out: dict[str, str] = {}
    for piece in pieces:
        name, _, value = piece.partition("=")
        out[name.strip().lower()] = value.strip().strip('"')
    return out


def _media_types(header: str) -> list[tuple[str, float]]:
    """The media ranges of an ``Accept`` header with their q; a range for another FHIR release counts as q=0."""
    out = []
    for part in header.split(","):
        pieces = [p.strip() for p in part.split(";")]
        if not pieces[0]:
            continue
        parameters = _parameters(pieces[1:])
        try:
            q = float(parameters.get("q", "1"))
        except ValueError:
            q = 0.0
        if parameters.get("fhirversion", "4.0") not in FHIR_VERSIONS:
            q = 0.0
        out.append((pieces[0].lower(), q))
    return out


def response_media_type(request: Request, *, offered: tuple[str, ...] = FHIR_FORMATS) -> str:
    """The media type to answer with, from ``_format`` (which wins) or ``Accept``; 406 when none fits. A FHIR
    format chosen is recorded in the request's scope (:func:`negotiated_media_type`)."""
    chosen = _chosen_media_type(request, offered)
    if chosen in FHIR_FORMATS:
        request.scope[MEDIA_TYPE_KEY] = chosen
    return chosen


def negotiated_media_type(request: Request) -> str:
    """The FHIR format of this request's responses, its errors' included: the one negotiated, else the one it
    asks for, else JSON (an error is answered even to a client that accepts nothing this server writes)."""
    recorded = request.scope.get(MEDIA_TYPE_KEY)
    if recorded:
        return str(recorded)
    try:
        return response_media_type(request)
    except NotAcceptable:
        return FHIR_JSON


def _chosen_media_type(request: Request, offered: tuple[str, ...]) -> str:
    fmt = request.query_params.get("_format")
    if fmt:
        wanted = _FORMAT_ALIASES.get(fmt.strip().lower(), fmt.strip().lower())
        if wanted in offered:
            return wanted
        raise NotAcceptable(f"_format '{fmt}' is not supported; this server speaks {', '.join(offered)}")
    accept = request.headers.get("accept")
    if not accept:
        return offered[0]
    for media_type, q in sorted(_media_types(accept), key=lambda t: -t[1]):
        if q <= 0:
            continue
        if media_type in ("*/*", "application/*"):
            return offered[0]
        wanted = _FORMAT_ALIASES.get(media_type, media_type)
        if wanted in offered:
            return wanted
    raise NotAcceptable(f"None of the accepted media types ({accept}) is supported; use {' or '.join(offered)}")


# The FHIR media types proper: a client naming one of them asks for a Binary as a resource (binary.html#rest)
_FHIR_TYPES = frozenset({FHIR_JSON, "application/json+fhir", "application/fhir+xml", "application/xml+fhir"})
_FHIR_QUERY = ("_format", "_summary", "_elements")  # the FHIR form's own parameters


def wants_native_binary(request: Request, content_type: str) -> bool:
    """Whether a read of a Binary of ``content_type`` answers its content (https://hl7.org/fhir/R4/binary.html#rest):
    yes unless the client asks for the resource, by ``_format`` (or ``_summary``, ``_elements``: shaping the
    resource), or by an ``Accept`` range of a FHIR media type. A generic JSON range asks for the content when
    it is JSON itself (``contentType`` ``application/...+json``), for the resource otherwise."""
    if any(name in request.query_params for name in _FHIR_QUERY):
        return False
    ranges = [media_type for media_type, q in _media_types(request.headers.get("accept") or "") if q > 0]
    if any(media_type in _FHIR_TYPES for media_type in ranges):
        return False
    generic_json = [media_type for media_type in ranges if media_type in _JSON_TYPES]
    return not generic_json or _is_json(content_type)


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";")[0].strip().lower()
    return media_type.endswith("/json") or media_type.endswith("+json")


async def read_binary_body(request: Request, settings: Settings) -> tuple[Any, bytes, str]:
    """The body of a Binary's create or update as (the parsed resource or None, the bytes, the Content-Type): a
    body of a JSON media type (or none) is parsed, as it may be a Binary resource, and so is one of a FHIR XML
    type; any other (``application/xml`` too: a CDA document is XML) is content as is."""
    header = request.headers.get("content-type") or ""
    media_type, *parameters = (piece.strip() for piece in header.split(";"))
    raw = await read_raw_body(request, settings.max_body_bytes)
    fhir_xml = media_type.lower() in (FHIR_XML, "application/xml+fhir")
    if media_type and media_type.lower() not in _JSON_TYPES and not fhir_xml:
        return None, raw, header
    _check_fhir_version(header, parameters)
    return _parsed(raw, fhir_xml, settings), raw, header


def _parsed(raw: bytes, xml: bool, settings: Settings) -> Any:
    """A body's JSON, or its XML converted to the same JSON (checked against the same limits)."""
    if not xml:
        return fhirjson.loads(raw, settings.json_limits)
    return resource_from_xml(raw, limits=settings.json_limits)  # the same depth and array limits as JSON


async def read_body(request: Request, settings: Settings, *, patch: bool = False) -> Any:
    """The request body parsed as JSON (decimals exact), after media-type and size checks; deeper nesting or
    longer arrays than the settings allow, a repeated property name or a lone surrogate are a 400."""
    header = request.headers.get("content-type") or ""
    content_type, *parameters = (piece.strip() for piece in header.split(";"))
    content_type = content_type.lower()
    allowed = {JSON_PATCH, *_JSON_TYPES, *_XML_TYPES} if patch else {*_JSON_TYPES, *_XML_TYPES}
    if content_type and content_type not in allowed:  # a patch: JSON Patch, or a FHIRPath Patch in either format
        expected = f"{JSON_PATCH}, {FHIR_JSON} or {FHIR_XML}" if patch else f"{FHIR_JSON} or {FHIR_XML}"
        raise UnsupportedMediaType(f"Content-Type '{content_type}' is not supported here; send {expected}")
    _check_fhir_version(header, parameters)
    raw = await read_raw_body(request, settings.max_body_bytes)
    parsed = _parsed(raw, content_type in _XML_TYPES, settings)
    if patch and content_type:
        _check_patch_media_type(content_type, parsed)
    return parsed


def _check_fhir_version(header: str, parameters: list[str]) -> None:
    version = _parameters(parameters).get("fhirversion")
    if version is not None and version not in FHIR_VERSIONS:
        raise UnsupportedMediaType(f"Content-Type '{header}': this server takes FHIR R4 content (fhirVersion=4.0)")


def _check_patch_media_type(content_type: str, document: Any) -> None:
    """http.html#patch: a JSON Patch (an array) is application/json-patch+json, a FHIRPath Patch (a Parameters
    resource) a FHIR JSON type; a body of the one sent as the other is refused as its media type."""
    if content_type == JSON_PATCH and isinstance(document, dict):
        raise UnsupportedMediaType(f"A FHIRPath Patch (a Parameters resource) is sent as {FHIR_JSON}")
    if content_type != JSON_PATCH and isinstance(document, list):
        raise UnsupportedMediaType(f"A JSON Patch (a JSON array) is sent as {JSON_PATCH}")


async def read_raw_body(request: Request, max_bytes: int) -> bytes:
    """The body as sent, or decompressed when sent with ``Content-Encoding: gzip`` (RFC 9110 8.4): at most
    ``max_bytes`` either way (413), read as it arrives so that a small body that inflates without bound (a
    "zip bomb") is refused at the limit; another content coding is a 415 naming the one accepted."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"The body ({declared} bytes) exceeds the limit of {max_bytes} bytes")
    coding = (request.headers.get("content-encoding") or "identity").strip().lower()
    if coding not in _CODINGS:
        raise UnsupportedMediaType(f"Content-Encoding '{coding}' is not supported: send the body as is or in gzip",
                                   headers={"Accept-Encoding": "gzip"})
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if coding != "identity" else None
    chunks, size = [], 0
    async for chunk in request.stream():
        if inflater is not None:
            chunk = _inflate(inflater, chunk, max_bytes - size, max_bytes)
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"The body exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
    if inflater is not None and (not inflater.eof or inflater.unused_data):
        raise InvalidRequest("The gzip body is truncated, or followed by other data", code="structure")
    return b"".join(chunks)


_CODINGS = frozenset({"identity", "gzip", "x-gzip"})  # x-gzip: RFC 9110 8.4.1.3, the same coding


def _inflate(inflater: Any, chunk: bytes, room: int, limit: int) -> bytes:
    """``chunk`` of a gzip stream, inflated into at most ``room`` bytes (more: 413)."""
    try:
        inflated: bytes = inflater.decompress(chunk, room + 1)  # never 0: 0 would mean no bound
    except zlib.error as exc:
        raise InvalidRequest(f"The gzip body is corrupt: {exc}", code="structure") from exc
    if len(inflated) > room or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"The body exceeds the limit of {limit} bytes once inflated")
    return inflated


def fhir_response(body: Any, status: int = 200, headers: dict[str, str] | None = None,
                  *, pretty: bool = False, media_type: str = FHIR_JSON) -> Response:
    """A resource (or none) in ``media_type``, FHIR JSON or FHIR XML."""
    if body is None:
        return Response(b"", status_code=status, headers=headers)
    xml = media_type == FHIR_XML
    try:
        content = resource_to_xml(body, pretty=pretty) if xml else fhirjson.dumps(body, pretty=pretty)
    except ValueError as exc:  # XML 1.0 cannot carry U+FFFE or U+FFFF, which a FHIR string may hold
        raise NotAcceptable(f"This resource cannot be written in XML ({exc}); ask for {FHIR_JSON}") from exc
    return Response(content, status_code=status, headers=headers,
                    media_type=f"{FHIR_XML if xml else FHIR_JSON}; charset=utf-8")
