"""batch and transaction Bundles (https://hl7.org/fhir/R4/http.html#transaction): ``parse`` (entries as requests,
through the one request parser), ``transaction`` (all or nothing, one unit of work), ``batch`` (every entry on
its own, re-dispatched like an HTTP request) and ``response`` (the response entries, shaped by ``Prefer``)."""
