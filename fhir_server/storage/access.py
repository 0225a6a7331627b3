"""The one access checkpoint: every read and write filter of the store passes through here.

Today every caller sees everything. Center-scoped security is a change of this module only: ``read_filter``
adds the caller's center to every query (search, _include, chaining, history, conditional matches, export),
and ``check_write`` refuses writes outside it.
"""

from __future__ import annotations

from typing import Any

from fhir_server.context import RequestContext
from fhir_server.storage.audit_log import audit_read_filter


class AccessPolicy:
    def read_filter(self, ctx: RequestContext, resource_type: str | None) -> dict[str, Any]:
        """Extra MongoDB filter that restricts what ``ctx`` may read of ``resource_type``."""
        return audit_read_filter(ctx, resource_type)  # the audit trail: admins only

    def check_write(self, ctx: RequestContext, resource_type: str, resource: dict[str, Any] | None) -> None:
        """Raise a FhirError when ``ctx`` may not write this resource."""
        return None


def restrict(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    if not extra:
        return base
    if not base:
        return extra
    return {"$and": [base, extra]}
