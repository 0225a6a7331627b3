"""The process's heap after start-up (``heap.settle_heap``, run by the app's lifespan)."""

from __future__ import annotations

import gc

from fhir_server.heap import GC_YOUNG_THRESHOLD, settle_heap


def test_after_start_up_its_objects_are_frozen_and_the_young_generation_is_collected_less_often() -> None:
    thresholds = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *thresholds[1:])
        assert GC_YOUNG_THRESHOLD > 700  # CPython's default
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
