"""Errors as exceptions that carry OperationOutcome issues.

See https://hl7.org/fhir/R4/operationoutcome.html. Each error class names its HTTP status
(``FhirError.status``), the one mapping; ``fhir_server.api.errors`` turns errors into responses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue."""

    severity: str  # fatal | error | warning | information
    code: str  # IssueType, e.g. invalid, structure, required, value, not-found, conflict
    diagnostics: str
    expression: tuple[str, ...] = ()

    def to_fhir(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def operation_outcome(issues: list[Issue] | tuple[Issue, ...]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


class FhirError(Exception):
    """Base class: a client-visible failure described by OperationOutcome issues.

    ``status`` is the HTTP status of the class: the one mapping from errors to statuses, used by the API and by
    batch/transaction response entries alike.
    """

    status = 500

    def __init__(self, diagnostics: str | None = None, *, code: str = "processing",
                 issues: list[Issue] | None = None, expression: tuple[str, ...] = (),
                 headers: dict[str, str] | None = None) -> None:
        if issues is None:
            issues = [Issue("error", code, diagnostics or self.__class__.__name__, expression)]
        self.issues = issues
        self.headers = headers or {}
        super().__init__(diagnostics or "; ".join(i.diagnostics for i in issues))

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


class Unauthorized(FhirError):
    """401: no valid access token (RFC 6750 section 3: the response says ``WWW-Authenticate: Bearer``)."""

    status = 401

    def __init__(self, diagnostics: str, *, token_given: bool = True, **kw: Any) -> None:
        challenge = 'Bearer realm="fhir"'
        if token_given:  # RFC 6750 3.1: a token was sent and is not acceptable
            challenge += ', error="invalid_token"'
        super().__init__(diagnostics, code=kw.pop("code", "login"),
                         headers={"WWW-Authenticate": challenge, **kw.pop("headers", {})}, **kw)


class Forbidden(FhirError):
    """403: the caller is known but its scopes or role do not allow the request."""

    status = 403

    def __init__(self, diagnostics: str, **kw: Any) -> None:
        super().__init__(diagnostics, code=kw.pop("code", "forbidden"), **kw)


class InvalidRequest(FhirError):
    """400: malformed or invalid input."""

    status = 400


class NotFound(FhirError):
    """404: unknown type, id or version."""

    status = 404

    def __init__(self, diagnostics: str, **kw: Any) -> None:
        super().__init__(diagnostics, code=kw.pop("code", "not-found"), **kw)


class Gone(FhirError):
    """410: the resource was deleted."""

    status = 410

    def __init__(self, diagnostics: str, **kw: Any) -> None:
        super().__init__(diagnostics, code=kw.pop("code", "deleted"), **kw)


class MethodNotAllowed(FhirError):
    """405."""

    status = 405

    def __init__(self, diagnostics: str, **kw: Any) -> None:
        super().__init__(diagnostics, code=kw.pop("code", "not-supported"), **kw)


class NotAcceptable(FhirError):
    """406: no acceptable response format."""

    status = 406

    def __init__(self, diagnostics: str, **kw: Any) -> None:
        super().__init__(diagnostics, code=kw.pop("code", "not-supported"), **kw)


class UnsupportedMediaType(FhirError):
    """415: request body format not supported."""

    status = 415

    def __init__(self, diagnostics: str, **kw: Any) -> None:
        super().__init__(diagnostics, code=kw.pop("code", "not-supported"), **kw)


class Conflict(FhirError):
    """409: a version or identity conflict."""

    status = 409

    def __init__(self, diagnostics: str, **kw: Any) -> None:
        super().__init__(diagnostics, code=kw.pop("code", "conflict"), **kw)


class PreconditionFailed(FhirError):
    """412: If-Match stale, or a conditional matched several resources."""

    status = 412

    def __init__(self, diagnostics: str, **kw: Any) -> None:
        super().__init__(diagnostics, code=kw.pop("code", "conflict"), **kw)


class PayloadTooLarge(FhirError):
    """413."""

    status = 413

    def __init__(self, diagnostics: str, **kw: Any) -> None:
        super().__init__(diagnostics, code=kw.pop("code", "too-costly"), **kw)


class UnprocessableEntity(FhirError):
    """422: the resource is well formed but breaks a profile or a business rule."""

    status = 422


class ServiceUnavailable(FhirError):
    """503: the database is unavailable for now (unreachable, electing a primary, a conflict beyond the time
    budget); ``Retry-After`` says when to try again (RFC 9110 15.6.4)."""

    status = 503

    def __init__(self, diagnostics: str, *, retry_after: int, **kw: Any) -> None:
        headers = {**kw.pop("headers", {}), "Retry-After": str(retry_after)}
        super().__init__(diagnostics, code=kw.pop("code", "transient"), headers=headers, **kw)
