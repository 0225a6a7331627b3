"""The resource types a canonical element may name (https://hl7.org/fhir/R4/references.html#canonical, the element's
``type.targetProfile`` in the core definitions): ``QuestionnaireResponse.questionnaire`` names a Questionnaire,
``ValueSet.compose.include.valueSet`` a ValueSet, ``meta.profile`` a StructureDefinition.

A canonical is resolved by the url its target declares, so the server can only judge one whose url it knows: the
definitions it holds (R4's own value sets, code systems and StructureDefinitions, and those published to it). One
of them of another type than the element names is an **error** (HL7's validator suite, qr-bad-ref2: a
QuestionnaireResponse answering the value set ``example-extensional``): the reference names something the element
cannot mean. An unknown url, a ``#fragment`` and an element whose targets include any resource are not judged.

It runs on every write, and walks only the elements that can hold such a canonical, directly or below: the table of
them per type is built once from the structure table of ``validation/primitives.py``
(``validation/target_tables.py``, as for ``validation/reference_targets.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhir_server.errors import Issue
from fhir_server.validation.target_tables import walk_targets

KindOf = Callable[[str], str | None]  # canonical url -> the resource type the server knows it as, or None


def canonical_target_issues(resource: dict[str, Any], kind_of: KindOf) -> list[Issue]:
    """An error for every canonical of ``resource`` (contained resources and the resources of a Bundle included)
    that names a definition the server knows, of a type its element does not allow."""
    issues: list[Issue] = []

    def found(item: Any, allowed: frozenset[str], path: str) -> None:
        if type(item) is str:
            _check(item, allowed, path, kind_of, issues)

    walk_targets(resource, "canonical", found)
    return issues


def _check(canonical: str, allowed: frozenset[str], path: str, kind_of: KindOf, issues: list[Issue]) -> None:
    url = canonical.partition("|")[0]
    if not url or url.startswith("#"):
        return
    kind = kind_of(url)
    if kind is not None and kind not in allowed:
        issues.append(Issue("error", "structure", f"{path}: {url[:200]} is a {kind}, and this element names a "
                            f"{' or '.join(sorted(allowed))}", (path,)))
