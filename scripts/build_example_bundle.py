"""Write ``examples/patient-bundle.json``: one registry patient's transaction Bundle, the README's first example.

The Bundle is what a center submits (data-contract.md, "A typical submission"), built by the same builder as the
synthetic data and the legacy import (``fhir_server.registry.form_a.build_bundle``): the center, the patient, the CML
diagnosis, two imatinib periods (400 mg once daily, then twice daily until stopped for a cytogenetic relapse),
baseline labs, risk scores, responses, the registration observation, the decision and the second-line therapy,
each created conditionally. It passes the registry's rules (``tests/api/test_example_bundle.py``).

    .venv/bin/python scripts/build_example_bundle.py
"""

from __future__ import annotations

import random
from datetime import date
from decimal import Decimal
from pathlib import Path

from fhir_server import fhirjson
from fhir_server.registry.form_a import DosePeriod, PatientRecord, ResponseAssessment, build_bundle, uuid_factory

OUT = Path(__file__).resolve().parents[1] / "examples" / "patient-bundle.json"

RECORD = PatientRecord(
    pseudonym="FR-POI-0042", center="FR-POI", center_name="CHU de Poitiers", country="FR",
    sex="female", birth_date="1957-06", prospective=False,
    diagnosis_date=date(2003, 2, 10), phase_at_diagnosis="chronic",
    periods=(DosePeriod(date(2003, 3, 1), date(2004, 9, 15), Decimal(400)),
             DosePeriod(date(2004, 9, 15), date(2006, 4, 20), Decimal(400), frequency=2)),
    stop_reason="cytogenetic-relapse", registration_date=date(2006, 4, 20), phase_at_registration="chronic",
    decision="dasatinib", decision_date=date(2006, 5, 2),
    baseline={"spleen": Decimal(6), "platelets": Decimal(480), "blasts": Decimal("2.5"),
              "eosinophils": Decimal("2.1"), "basophils": Decimal("4.0")},
    responses=(ResponseAssessment("hematologic-response", date(2003, 6, 2), "chr"),
               ResponseAssessment("cytogenetic-response", date(2004, 3, 1), "ccyr")),
    second_line_atc="L01EA02", second_line_start=date(2006, 5, 10),
)


def main() -> None:
    bundle = build_bundle(RECORD, new_urn=uuid_factory(random.Random(42)))  # stable fullUrls
    OUT.write_bytes(fhirjson.dumps(bundle, pretty=True) + b"\n")
    print(f"wrote {OUT} ({len(bundle['entry'])} entries)")


if __name__ == "__main__":
    main()
