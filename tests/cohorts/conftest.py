"""The cohort tests use the bulk tests' app fixture (with $cohort, $export and the export files)."""

from tests.bulk.conftest import bulk

__all__ = ["bulk"]
