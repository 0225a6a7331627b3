"""Extract the UCUM atoms and prefixes that units are canonicalised with (``fhir_server/terminology/ucum.py``).

Source: ``data/ucumDefs.min.json`` of the npm package ``@lhncbc/ucum-lhc`` **7.1.10** (the US National Library of
Medicine's UCUM library), which carries the UCUM table (https://ucum.org) as rows. Only the rows whose source is
UCUM are kept (the package adds LOINC's unit combinations, which are expressions, not atoms), and of each only what
a conversion needs: the definition as UCUM gives it (a decimal text and a unit expression, e.g. ``mm[Hg]`` is
``133.3220 kPa`` per ``m[Hg]``), whether the atom is a base unit, metric (takes prefixes), arbitrary (commensurable
only with itself) or special (a non-linear conversion). The decimal texts are UCUM's, so conversions are exact
(the package's own magnitudes are binary floats).

Licence: the UCUM table is copyright Regenstrief Institute, Inc. and The UCUM Organization, used under the UCUM
licence (https://ucum.org/license: free of charge, copies keep this notice); the package is under NLM's BSD-style
licence (its ``LICENSE.md``). Both notices are written into the output.

Output, committed: ``fhir_server/terminology/data/ucum.json``.

Usage::

    cd /tmp && npm pack @lhncbc/ucum-lhc@7.1.10 && mkdir -p ucum-lhc && tar xzf lhncbc-ucum-lhc-7.1.10.tgz -C ucum-lhc
    .venv/bin/python scripts/build_ucum.py [/tmp/ucum-lhc/package/data/ucumDefs.min.json]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

SOURCE = Path("/tmp/ucum-lhc/package/data/ucumDefs.min.json")
OUT = Path(__file__).resolve().parent.parent / "fhir_server" / "terminology" / "data" / "ucum.json"
NOTICE = ("The UCUM table and UCUM codes are copyright 1995-2009, Regenstrief Institute, Inc. and the Unified Codes "
          "for Units of Measures (UCUM) Organization; all rights reserved; used under the licence at "
          "https://ucum.org/license. Extracted from @lhncbc/ucum-lhc 7.1.10 (data/ucumDefs.min.json), developed by "
          "the Lister Hill National Center for Biomedical Communications, U.S. National Library of Medicine, "
          "distributed under its BSD-style licence. Built by scripts/build_ucum.py.")


def _rows(section: dict[str, Any]) -> list[dict[str, Any]]:
    names = [key if isinstance(key, str) else key[0] for key in section["config"]]
    return [dict(zip(names, row, strict=True)) for row in section["data"]]


def _prefix_value(row: dict[str, Any]) -> str:
    """A prefix's factor as exact decimal text: ``1e-3`` from the exponent, else the (binary prefix's) integer."""
    return f"1e{row['exp_']}" if row["exp_"] is not None else str(int(row["value_"]))


# A leading factor of a definition, in the case-insensitive form: numbers, powers of ten and pi (``4.[PI].10*-7.``).
_FACTOR_PREFIX = re.compile(r"[0-9.*+/-]*(\[PI\][.]?[0-9.*+/-]*)*")


def _definition(row: dict[str, Any]) -> str | None:
    """The atom's defining unit expression. The package's case-sensitive ``csUnitString_`` lacks the leading
    factor of five definitions, which its case-insensitive ``ciUnitString_`` keeps: ``[mu_0]`` is
    ``4.[pi].10*-7.N/A2`` (not ``N/A2``), ``Oe`` is ``/[pi].A/m`` (not ``A/m``), ``[S]`` is ``10*-13.s`` (not ``s``),
    ``[diop]`` is ``/m`` (not ``m``) and ``[mesh_i]`` is ``/[in_i]``. The factor is put back, in case-sensitive
    form (UCUM's functional test 3-124 found the first: ``[mu_0]`` came out 1000 g.m.C-2)."""
    cs, ci = row["csUnitString_"], row["ciUnitString_"]
    if cs is None or ci is None or ci == cs.upper() or not ci.endswith(cs.upper()):
        return cs
    prefix = ci[: len(ci) - len(cs)]
    if not _FACTOR_PREFIX.fullmatch(prefix):
        raise ValueError(f"{row['csCode_']}: cannot reconcile {cs!r} with {ci!r}")
    return prefix.replace("[PI]", "[pi]") + cs


def _atom(row: dict[str, Any]) -> dict[str, Any]:
    atom: dict[str, Any] = {"metric": bool(row["isMetric_"] or row["isBase_"])}  # UCUM: every base unit is metric
    if row["isBase_"]:
        atom["base"] = True
        return atom
    atom["unit"] = _definition(row)
    if row["isSpecial_"]:
        atom["special"] = row["cnv_"]
    else:
        atom["value"] = row["baseFactorStr_"]
    if row["isArbitrary_"]:
        atom["arbitrary"] = True
    return atom


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE
    data = json.loads(source.read_text())
    prefixes = {row["code_"]: _prefix_value(row) for row in _rows(data["prefixes"])}
    atoms = {row["csCode_"]: _atom(row) for row in _rows(data["units"]) if row["source_"] == "UCUM"}
    OUT.write_text(json.dumps({"notice": NOTICE, "prefixes": prefixes, "atoms": atoms}, indent=0,
                              sort_keys=True) + "\n")
    print(f"{len(prefixes)} prefixes, {len(atoms)} atoms -> {OUT}")


if __name__ == "__main__":
    main()
