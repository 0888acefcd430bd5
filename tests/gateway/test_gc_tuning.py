import gc
from collections.abc import Iterator

import pytest

from gateway import gc_tuning


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restore_gc")
def test_tuning_freezes_startup_objects_and_raises_the_threshold(settings) -> None:
    settings.AICC_GC_GEN0_THRESHOLD = 12345
    gc.unfreeze()

    assert gc_tuning.tune_for_serving() is True

    assert gc.get_threshold() == (12345, *gc_tuning.OLDER_GENERATION_THRESHOLDS)
    assert gc.get_freeze_count() > 10_000


@pytest.mark.usefixtures("restore_gc")
def test_zero_leaves_the_collector_alone(settings) -> None:
    settings.AICC_GC_GEN0_THRESHOLD = 0
    gc.unfreeze()
    before = gc.get_threshold()

    assert gc_tuning.tune_for_serving() is False

    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
