"""A Binary in its native form (https://hl7.org/fhir/R4/binary.html#rest).

A Binary is written and read on the RESTful API as the content it holds, not only as FHIR JSON:

* a create or update whose body is not a Binary resource (a PDF, an image, any JSON that is not a Binary) is
  that content as is: the server makes the Binary, ``contentType`` from the request's ``Content-Type`` and the
  ``X-Security-Context`` header as ``securityContext.reference``;
* a read of a Binary answers its content with its own media type, unless the client asks for FHIR (the API's
  negotiation decides, ``api.negotiation.wants_native_binary``).

Pure: the API layer reads the HTTP headers and the body, this module makes and unmakes the resource.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

BINARY = "Binary"
OCTET_STREAM = "application/octet-stream"

# A media type as it may stand in a Content-Type header: type/subtype and parameters, printable ASCII only (a
# stored contentType holding a line break or a non-ASCII character never reaches a header)
_MEDIA_TYPE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+(?:\s*;[\x20-\x7e]*)?$")


def native_binary(content: bytes, content_type: str | None, security_context: str | None,
                  resource_id: str | None) -> dict[str, Any]:
    """The Binary holding ``content`` as sent; ``resource_id`` the id of the URL of an update."""
    resource: dict[str, Any] = {"resourceType": BINARY}
    if resource_id is not None:
        resource["id"] = resource_id
    resource["contentType"] = (content_type or "").strip() or OCTET_STREAM
    if security_context:
        resource["securityContext"] = {"reference": security_context.strip()}
    if content:
        resource["data"] = base64.b64encode(content).decode("ascii")
    return resource


def is_binary_resource(document: Any) -> bool:
    """Whether a parsed JSON body is a Binary resource (stored as sent) rather than content to wrap."""
    return isinstance(document, dict) and document.get("resourceType") == BINARY


def native_content(resource: dict[str, Any]) -> tuple[bytes, str]:
    """The content of a stored Binary and the media type to serve it with (``application/octet-stream`` for a
    ``contentType`` that cannot stand in a header)."""
    content_type = resource.get("contentType")
    if not isinstance(content_type, str) or not _MEDIA_TYPE.match(content_type):
        content_type = OCTET_STREAM
    data = resource.get("data")
    if not isinstance(data, str):
        return b"", content_type
    try:  # base64Binary allows whitespace between the groups of four (datatypes.html#base64Binary)
        return base64.b64decode("".join(data.split()), validate=True), content_type
    except binascii.Error:  # not RFC 4648 base64, which the write's checks refuse: its text, as bytes
        return data.encode("utf-8"), OCTET_STREAM


def security_context_of(resource: dict[str, Any]) -> str | None:
    """``Binary.securityContext.reference``, the ``X-Security-Context`` header of a native read."""
    context = resource.get("securityContext")
    reference = context.get("reference") if isinstance(context, dict) else None
    return reference if isinstance(reference, str) and _printable(reference) else None


def _printable(text: str) -> bool:
    return all(" " <= ch <= "~" for ch in text)
