"""FHIR search, pure part: parameter registry, index extraction, query parsing and compilation to MongoDB.

Spec: https://hl7.org/fhir/R4/search.html. No I/O here: ``fhir_server.interactions.search`` executes the
compiled filters, joins (chains, ``_has``), includes and paging.
"""

from fhir_server.search.compile import ChainJoin, CompiledSearch, HasJoin, IncludePlan, compile_search
from fhir_server.search.extract import extract_index_values
from fhir_server.search.model import ParsedSearch, TerminologyRequest
from fhir_server.search.paging import after_filter, decode_page_token, encode_page_token, sort_values
from fhir_server.search.parse import parse_search
from fhir_server.search.registry import SearchParam, SearchParameterRegistry

__all__ = [
    "ChainJoin",
    "CompiledSearch",
    "HasJoin",
    "IncludePlan",
    "ParsedSearch",
    "SearchParam",
    "SearchParameterRegistry",
    "TerminologyRequest",
    "after_filter",
    "compile_search",
    "decode_page_token",
    "encode_page_token",
    "extract_index_values",
    "parse_search",
    "sort_values",
]
