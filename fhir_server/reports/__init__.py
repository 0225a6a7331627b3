"""The registry report: ``$registry-report`` (MeasureReport, CSV) and the data behind the ``/report`` page.

data-contract.md, "The registry report". ``operation.register`` adds the operation; ``build.registry_report``
computes the report with one MongoDB aggregation (``pipeline``).
"""
