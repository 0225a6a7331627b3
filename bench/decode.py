"""What reading a stored document costs the server in CPU, and the share of its decimals (``storage/client.py``,
``DecimalCodec``): every read, search page and export decodes BSON, and every FHIR decimal in it (a dose, a lab
value, a score) is a Decimal128 turned into a Python Decimal by bson's pure-Python conversion (~15-19 us each).
The codec remembers the Decimals by their 16 bytes; this compares it with bson's conversion for every value.

The stored documents of N synthetic registry patients (``bench/search.py``'s ``stored_writes``: exactly what the
server stores, current versions), encoded to BSON once, then decoded with each codec, interleaved; CPU time
(``time.process_time``), the lowest of ``--rounds`` passes, each pass starting with an empty memory as a fresh
process does, under the server's garbage-collector settings (``heap.settle_heap``: the passes' cost depends on
them more than on anything else here). No mongod: only the decoding is measured.

    .venv/bin/python bench/decode.py --patients 5000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import bson
from bson.codec_options import CodecOptions, TypeRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.search import stored_centers, stored_writes
from fhir_server.heap import settle_heap
from fhir_server.search.registry import SearchParameterRegistry
from fhir_server.storage import client

EVERY, SERVER = "every value converted", "the server's codec"


class ConvertEveryValue(client.DecimalCodec):
    """bson's conversion of every Decimal128, nothing remembered (the codec before ``transform_bson``'s memory)."""

    def transform_bson(self, value: Any) -> Any:
        return value.to_decimal()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    writes, _ = stored_writes(args.patients, SearchParameterRegistry.load_default())
    docs = [w.current_document(c) for w, c in zip(writes, stored_centers(writes), strict=True)]
    print(f"{args.patients} patients, {len(docs)} current documents; CPU to decode them all, lowest of {args.rounds}:")
    # what a read, a search page and an export fetch (the resource), and whole documents (their search values too)
    for what, shown in (("resources", [{"_id": d["_id"], "resource": d["resource"]} for d in docs]),
                        ("whole documents", docs)):
        data = b"".join(bson.encode(doc, codec_options=client.CODEC_OPTIONS) for doc in shown)
        settle_heap()  # the server's collector settings: what a pass costs depends on them (fewer young passes)
        best = _lowest(data, args.rounds)
        change = best[SERVER] / best[EVERY] - 1
        print(f"  {what} ({len(data) / 2**20:.0f} MB of BSON): "
              + ", ".join(f"{name} {seconds:.3f} s ({seconds / len(docs) * 1e6:.1f} us each)"
                          for name, seconds in best.items()) + f": {change:+.0%}")


def _lowest(data: bytes, rounds: int) -> dict[str, float]:
    codecs = {EVERY: CodecOptions(tz_aware=True, type_registry=TypeRegistry([ConvertEveryValue()])),
              SERVER: client.CODEC_OPTIONS}
    best = dict.fromkeys(codecs, float("inf"))
    for _ in range(rounds):
        for name, options in codecs.items():
            client.forget_decimals()
            start = time.process_time()
            bson.decode_all(data, options)
            best[name] = min(best[name], time.process_time() - start)
    return best


if __name__ == "__main__":
    main()
