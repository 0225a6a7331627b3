"""FHIR Bulk Data export (Bulk Data Access IG 2.0, https://hl7.org/fhir/uv/bulkdata/STU2/export.html).

* ``params``    - kick-off validation: headers, ``_type``, ``_since``, ``_typeFilter``, ``_outputFormat``.
* ``scope``     - which resource types and MongoDB filters an export level (system, Patient, Group) covers.
* ``jobs``      - export jobs in the job store of ``storage/`` (kind ``export``), shared by every server process.
* ``ndjson``    - NDJSON files on disk, split above a number of resources per file.
* ``runner``    - the background task that streams cursors into files, with heartbeat and cancellation.
* ``operation`` - the ``$export`` and ``$export-poll-status`` handlers and their ``register``.

Files are served by ``fhir_server.api.bulk_files.router``.
"""
