"""The circuit breaker's state machine on process memory: what the Lua scripts in gateway/lua/
do in Redis, used by gateway.breaker only while Redis is unreachable."""

from __future__ import annotations

from dataclasses import dataclass

# Script replies are {outcome, deadline_ms, number}; a closed `allow` returns the failure count.
Reply = tuple[str, int, int]


@dataclass(slots=True)
class LocalState:
    """The scripts' state machine on process memory, used only while Redis is unreachable."""

    is_open: bool = False
    failures: int = 0
    open_until_ms: int = 0
    timeout_ms: int = 0
    probe_token: str = ""
    probe_until_ms: int = 0

    def allow(self, now_ms: int, token: str, lease_ms: int) -> Reply:
        if not self.is_open:
            return ("closed", 0, self.failures)
        if now_ms < self.open_until_ms:
            return ("open", self.open_until_ms, 0)
        if self.probe_token and now_ms < self.probe_until_ms:
            return ("probing", self.probe_until_ms, 0)
        outcome = "probe_after_lapsed_lease" if self.probe_token else "probe"
        self.probe_token, self.probe_until_ms = token, now_ms + lease_ms
        return (outcome, self.open_until_ms, self.timeout_ms)

    def failure(self, now_ms: int, token: str, threshold: int, base_ms: int, max_ms: int) -> Reply:
        if self.is_open:
            if not token or token != self.probe_token:
                return ("ignored", 0, 0)
            self.timeout_ms = min(self.timeout_ms * 2, max_ms)
            self.open_until_ms = now_ms + self.timeout_ms
            self.probe_token, self.probe_until_ms = "", 0
            return ("reopened", self.open_until_ms, self.timeout_ms)
        self.failures += 1
        if self.failures < threshold:
            return ("counted", 0, self.failures)
        self.is_open, self.timeout_ms, self.open_until_ms = True, base_ms, now_ms + base_ms
        return ("opened", self.open_until_ms, self.timeout_ms)

    def success(self, token: str) -> Reply:
        if self.is_open and (not token or token != self.probe_token):
            return ("ignored", 0, 0)
        outcome = "closed" if self.is_open else "reset"
        self.is_open, self.failures, self.open_until_ms, self.timeout_ms = False, 0, 0, 0
        self.probe_token, self.probe_until_ms = "", 0
        return (outcome, 0, 0)

    def release(self, token: str) -> Reply:
        if token and token == self.probe_token:
            self.probe_token, self.probe_until_ms = "", 0
            return ("released", 0, 0)
        return ("ignored", 0, 0)

    @classmethod
    def from_hash(cls, fields: dict[bytes, bytes]) -> LocalState:
        def number(name: str) -> int:
            return int(fields.get(name.encode(), b"0"))

        return cls(
            is_open=fields.get(b"state") == b"open",
            failures=number("failures"),
            open_until_ms=number("open_until_ms"),
            timeout_ms=number("timeout_ms"),
            probe_token=fields.get(b"probe_token", b"").decode(),
            probe_until_ms=number("probe_until_ms"),
        )
