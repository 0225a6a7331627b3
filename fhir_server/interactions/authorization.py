"""The one point where a request is authorized, before anything is read or written.

Every request passes here with its interaction and resource type known: an HTTP request at the start of
``dispatch``, and every entry of a batch or transaction Bundle (a transaction's entries all before the first is
written), so a rule stated here holds on every path. For now it allows everything: issue #11 fills it in (SMART
scopes, https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html, checked against ``ctx.scopes``;
a center-scoped caller limited to its center), raising a ``FhirError`` (401/403) that ``api/errors.py``
renders like any other, and that a batch entry answers with on its own.
"""

from __future__ import annotations

from fhir_server.context import RequestContext
from fhir_server.interactions.request import FhirRequest


def authorize(ctx: RequestContext, request: FhirRequest) -> None:
    """Raise when ``ctx``'s caller may not perform ``request``; return otherwise."""
    del ctx, request  # every caller may do everything until issue #11
