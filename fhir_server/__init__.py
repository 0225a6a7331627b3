"""ifp-fhir: a FHIR R4 server for the IFP registry (CML patients in failure after imatinib)."""

__version__ = "0.1.0"
FHIR_VERSION = "4.0.1"
