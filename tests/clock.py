"""A clock for tests: it stands still until the test moves it (no sleeping)."""

from __future__ import annotations


class FakeClock:
    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds
