"""The garbage collector set for a long-lived gateway worker.

A request allocates thousands of short-lived containers, so Python's default generation-0
threshold (700) runs a collection several times per request, and the older generations keep
re-scanning the ~120,000 objects Django, the policy and the libraries leave behind at start-up.
Freezing those objects after start-up and collecting generation 0 every 20,000 allocations
instead cut CPU per chat request at 64 clients by ~25 % in paired A/B runs (1.54 → 1.40 ms with
the freeze alone, then 1.33 → 1.12 ms with the threshold; docs/BENCHMARKS.md). Reference
counting still frees everything that is not in a cycle at once; only cyclic garbage waits longer.
"""

from __future__ import annotations

import gc

from django.conf import settings

# Generations 1 and 2 are collected after this many collections of the generation below.
OLDER_GENERATION_THRESHOLDS = (50, 1000)


def tune_for_serving() -> bool:
    """Freeze what start-up built and raise the thresholds; False when switched off (0)."""
    gen0_threshold = settings.AICC_GC_GEN0_THRESHOLD
    if gen0_threshold == 0:
        return False
    gc.collect()  # what start-up left as garbage is freed, not frozen
    gc.freeze()
    gc.set_threshold(gen0_threshold, *OLDER_GENERATION_THRESHOLDS)
    return True
