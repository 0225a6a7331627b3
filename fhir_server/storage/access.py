"""The one access checkpoint: every read and write filter of the store passes through here (issue #11 items 6
and 7; README, "Centers").

``read_filter`` is added to every query of the store (read, vread, history at every level, search, ``_total``,
``_include``/``_revinclude``, the inner queries of chains and ``_has``, conditional matches, ``$everything``,
exports, the registry report's aggregation and each of its ``$lookup``/``$unionWith``), so no read path can skip
it: what a caller may not see does not exist for it (404, never 403; not counted; never matched):

* ``ehr``: its center's documents and the shared ones (``center: null``: conformance resources, clinical
  resources of no center); ``center`` must be present, so a document the start-up migration has not reached is
  hidden rather than shown (fail closed). Served by the ``center,_id`` index of every collection and the
  ``center,...`` indexes of history.
* ``maintainer``: the conformance resources only (no clinical data at all).
* ``researcher``, ``admin``, ``system``: everything.

``centers`` decides the center each stored version carries (the rules are in ``storage/centers.py``): the store
calls it for every write, with the centers of the stored resources the rules need, read without the filter
(only the decision leaves this module: a 403 or a 404, never a document).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fhir_server.context import RequestContext
from fhir_server.permissions import CONFORMANCE_TYPES, Role
from fhir_server.storage import centers
from fhir_server.storage.audit_log import audit_read_filter
from fhir_server.storage.centers import Key, Version

NOTHING: dict[str, Any] = {"_id": {"$in": []}}


class AccessPolicy:
    def read_filter(self, ctx: RequestContext, resource_type: str | None) -> dict[str, Any]:
        """Extra MongoDB filter that restricts what ``ctx`` may read of ``resource_type`` (None: the history of
        every type, whose documents carry ``type``). The audit trail is for admins only (``audit_read_filter``)."""
        audit = audit_read_filter(ctx, resource_type)
        if audit:
            return audit
        if ctx.role in centers.ROLES_OF_ONE_CENTER:
            own = [ctx.center] if ctx.center not in (None, centers.UNASSIGNED) else []
            return {"center": {"$in": [*own, None], "$exists": True}}
        if ctx.role == Role.MAINTAINER:
            if resource_type is None:
                return {"type": {"$in": list(CONFORMANCE_TYPES)}}
            return {} if resource_type in CONFORMANCE_TYPES else dict(NOTHING)
        return {}

    def rows_filter(self, ctx: RequestContext) -> dict[str, Any] | None:
        """The filter of the registry report's per-patient rows (``storage/report_rows.py``) for ``ctx``: a row
        carries its Patient's center, and this policy's filter is a function of the center and role alone, so a
        row is read as its Patient is. None when the rows cannot say what ``ctx`` may read (a policy whose
        ``read_filter`` is not this one's): the report then reads the source resources (fail closed)."""
        if type(self).read_filter is not AccessPolicy.read_filter:
            return None
        return self.read_filter(ctx, "Patient")

    def check_write(self, ctx: RequestContext, resource_type: str, resource: dict[str, Any] | None) -> None:
        """Raise a FhirError when ``ctx`` may not write this resource (role rules live in
        ``interactions/authorization.py``; which data a caller may touch is decided by :meth:`centers`)."""
        return None

    def centers(self, ctx: RequestContext, versions: Sequence[Version],
                stored: Mapping[Key, str | None]) -> list[str | None]:
        """The center each version is stored with, in order; raises Forbidden (403) or NotFound (404) for a
        write outside what ``ctx`` may touch."""
        return centers.assign(ctx.role, ctx.center, versions, stored)


def restrict(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    if not extra:
        return base
    if not base:
        return extra
    return {"$and": [base, extra]}
