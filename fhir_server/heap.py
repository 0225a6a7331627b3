"""The process's heap after start-up: what start-up built is frozen out of the cyclic collector's full passes, and
the young generation is collected less often (https://docs.python.org/3/library/gc.html). Run by the app's
lifespan (``api/app.py``) and by the audit writer process (``storage/audit_process.py``), whose batches of search
events are tens of thousands of dicts alive until their insert.
"""

from __future__ import annotations

import gc

# The young generation's threshold (CPython's default: 700 allocations of containers net of deallocations). A
# registry transaction Bundle allocates tens of thousands of short-lived dicts and lists (parsed entries, index
# values, validation nodes, BSON): at 700 it ran ~2.4 collections of generation 0 per Bundle and one of
# generation 1 per ~7 Bundles, each traversing objects still alive mid-request, ~0.07 ms of CPU per resource
# written (bench/README.md, "Transaction ingest, server CPU per resource"). At 20,000 most of them are freed by
# their reference counts before any collection looks at them; cyclic garbage waits for at most 20,000 more
# allocations (a few MB) before it is collected.
GC_YOUNG_THRESHOLD = 20_000


def settle_heap() -> None:
    """After start-up: what start-up built lives as long as the process, so keep it out of the cyclic
    collector's full passes (measured with bench/search.py: full collections of them were 40 ms pauses at the
    p95 of searches), and collect the young generation less often (``GC_YOUNG_THRESHOLD``)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
