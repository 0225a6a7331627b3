"""The codes the report's strata are made of: leaves of ifp-registration-reason (Tab. 1) with their top-level
group (failure / toxicity), and the ifp-decision codes (data-contract.md, "Code systems").

Terminology maintainers publish new versions of these CodeSystems through the API, so the stored
CodeSystem (newest ``lastUpdated`` with the canonical URL) is used when there is one; otherwise the
contract's v0.1 tables (``fhir_server.contract``), as in ``fhir_server.registry.form_a``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fhir_server.context import RequestContext
from fhir_server.contract import BASE, DECISIONS, REASONS
from fhir_server.storage.store import ResourceStore

REASON_SYSTEM = f"{BASE}/CodeSystem/ifp-registration-reason"
DECISION_SYSTEM = f"{BASE}/CodeSystem/ifp-decision"


@dataclass(frozen=True)
class Code:
    code: str
    display: str
    group: str | None = None  # top-level ancestor, for registration reasons


@dataclass(frozen=True)
class ReportCodes:
    reasons: tuple[Code, ...]  # the leaves, in CodeSystem order
    decisions: tuple[Code, ...]

    def groups(self) -> tuple[str, ...]:
        """Top-level reason groups in order of first appearance (failure, toxicity)."""
        return tuple(dict.fromkeys(c.group or c.code for c in self.reasons))

    def leaves_of(self, group: str) -> list[str]:
        return [c.code for c in self.reasons if c.group == group]


DEFAULT_CODES = ReportCodes(
    reasons=tuple(Code(code, display, group) for code, (display, group) in REASONS.items()),
    decisions=tuple(Code(code, display) for code, display in DECISIONS.items()),
)


def _leaves(concepts: list[dict[str, Any]], top: str | None = None) -> Iterator[Code]:
    """Selectable leaves of a concept tree (``is-a``), each with its top-level ancestor."""
    for concept in concepts:
        group = top or concept["code"]
        children = concept.get("concept") or []
        if children:
            yield from _leaves(children, group)
        else:
            yield Code(concept["code"], concept.get("display", concept["code"]), group)


async def _stored(ctx: RequestContext, store: ResourceStore, url: str) -> dict[str, Any] | None:
    docs = await store.find(ctx, "CodeSystem", {"resource.url": url}, sort=[("lastUpdated", -1)], limit=1)
    return docs[0]["resource"] if docs else None


async def report_codes(ctx: RequestContext, store: ResourceStore) -> ReportCodes:
    """The codes from the stored CodeSystems, or the contract's defaults."""
    reasons, decisions = DEFAULT_CODES.reasons, DEFAULT_CODES.decisions
    stored = await _stored(ctx, store, REASON_SYSTEM)
    if stored and stored.get("concept"):
        reasons = tuple(_leaves(stored["concept"]))
    stored = await _stored(ctx, store, DECISION_SYSTEM)
    if stored and stored.get("concept"):
        decisions = tuple(_leaves(stored["concept"]))
    return ReportCodes(reasons, decisions)
