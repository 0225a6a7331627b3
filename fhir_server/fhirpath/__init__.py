"""FHIRPath: one engine for search parameters, invariants and rule selectors.

Spec: https://hl7.org/fhirpath/N1/ and https://hl7.org/fhir/R4/fhirpath.html. A kernel package: it knows the R4
model, FHIRPath and UCUM's units (:mod:`fhir_server.terminology.ucum`, to compare quantities), and nothing of search,
validation, storage or HTTP (they import it, never the reverse).
:class:`Expression` compiles a common subset natively (:mod:`~fhir_server.fhirpath.compiler`, plain navigation
fused into one loop by :mod:`~fhir_server.fhirpath.navigation`) and evaluates the rest with fhirpathpy on the
same parse tree (:mod:`~fhir_server.fhirpath.syntax`), so a caller may rewrite the tree before compiling it.
"""

from fhir_server.fhirpath.compiler import is_true
from fhir_server.fhirpath.engine import Expression, expression
from fhir_server.fhirpath.navigation import Unsupported
from fhir_server.fhirpath.syntax import FhirPathSyntaxError, parse

__all__ = ["Expression", "FhirPathSyntaxError", "Unsupported", "expression", "is_true", "parse"]
