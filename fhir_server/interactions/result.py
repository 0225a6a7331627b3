"""What an interaction hands back to the API layer (or to a Bundle's response entry)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from fhir_server.context import RequestContext
from fhir_server.errors import Issue, operation_outcome
from fhir_server.storage.documents import StoredVersion, instant

# Prefer: return=... (https://hl7.org/fhir/R4/http.html#ops): what a write answers with
ReturnPreference = Literal["minimal", "representation", "OperationOutcome"]
RETURN_PREFERENCES: tuple[ReturnPreference, ...] = ("minimal", "representation", "OperationOutcome")


@dataclass
class InteractionResult:
    status: int
    resource: dict[str, Any] | None = None  # the body under Prefer: return=representation
    version: StoredVersion | None = None  # gives Location, ETag and Last-Modified
    outcome: dict[str, Any] | None = None  # an OperationOutcome with warnings or information

    def outcome_or_note(self, method: str) -> dict[str, Any]:
        """The body under ``Prefer: return=OperationOutcome``: the write's own warnings, or a note of success."""
        return self.outcome or operation_outcome(
            [Issue("information", "informational", f"{method} succeeded with status {self.status}")])

    def location(self, ctx: RequestContext) -> str | None:
        v = self.version
        if v is None:
            return None
        return ctx.url(v.type, v.id, "_history", str(v.vid))

    def headers(self, ctx: RequestContext, *, with_location: bool) -> dict[str, str]:
        headers: dict[str, str] = {}
        v = self.version
        if v is not None:
            headers["ETag"] = v.etag
            headers["Last-Modified"] = v.last_updated.strftime("%a, %d %b %Y %H:%M:%S GMT")
            location = self.location(ctx)
            if with_location and location:
                headers["Location"] = location
        return headers

    def response_entry(self, ctx: RequestContext) -> dict[str, Any]:
        """Bundle.entry.response of a transaction-response or batch-response."""
        response: dict[str, Any] = {"status": _status_text(self.status)}
        v = self.version
        if v is not None:
            response["location"] = ctx.url(v.type, v.id, "_history", str(v.vid))
            response["etag"] = v.etag
            response["lastModified"] = instant(v.last_updated)
        if self.outcome is not None:
            response["outcome"] = self.outcome
        return response


_REASONS = {200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified", 400: "Bad Request",
            404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 410: "Gone",
            412: "Precondition Failed", 422: "Unprocessable Entity", 500: "Internal Server Error"}


def _status_text(status: int) -> str:
    reason = _REASONS.get(status)
    return f"{status} {reason}" if reason else str(status)
