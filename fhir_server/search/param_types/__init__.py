"""One module per search parameter type (https://hl7.org/fhir/R4/search.html#ptypes): each owns the field
names of its index entries (the items of ``sp.<code>``), the builders of those entries (run at write time by
:mod:`fhir_server.search.extract`) and the MongoDB conditions a search value of that type compiles to (called
by :mod:`fhir_server.search.compile`, which keeps the AND/OR of clauses, chains, ``_has``, includes and sorts).

Which element types each parameter type indexes: https://hl7.org/fhir/R4/search.html#table.
``special`` parameters are not indexed (``SearchParam.indexed``), so they have no module.

Each also defines the parsed search value of its type (``TokenValue``, ``DateValue``...), which
:mod:`fhir_server.search.model` combines into clauses. The modules import nothing of the engine but
:mod:`fhir_server.search.values`, :mod:`fhir_server.search.index_layout` and each other, so that the registry
can name their fields and the model their values without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fhir_server.search.index_layout import SortKeyBuilder
from fhir_server.search.param_types import composite, date, number, quantity, reference, string, token, uri

EntryBuilder = Callable[[Any, str | None], list[Any]]  # (element value, type restriction) -> entries

ENTRY_BUILDERS: Mapping[str, EntryBuilder] = {
    "string": string.entries,
    "token": token.entries,
    "reference": reference.entries,
    "date": date.entries,
    "number": number.entries,
    "quantity": quantity.entries,
    "uri": uri.entries,
}
SORT_KEYS: Mapping[str, SortKeyBuilder] = {
    "string": string.sort_key,
    "token": token.sort_key,
    "reference": reference.sort_key,
    "date": date.sort_key,
    "number": number.sort_key,
    "quantity": quantity.sort_key,
    "uri": uri.sort_key,
}
MODIFIERS: Mapping[str, frozenset[str]] = {
    "string": string.MODIFIERS,
    "token": token.MODIFIERS,
    "reference": reference.MODIFIERS,
    "date": date.MODIFIERS,
    "number": number.MODIFIERS,
    "quantity": quantity.MODIFIERS,
    "uri": uri.MODIFIERS,
    "composite": composite.MODIFIERS,
    "special": frozenset(),
}
