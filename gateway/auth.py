"""Authentication: a request's key -> the caller (tenant, key, what it may do).

Keys come in `Authorization: Bearer`, `api-key` or `x-api-key`. A malformed key or a bad
checksum is refused without touching storage. Credentials are cached per process, so steady
state costs no database query; any change to a key or tenant bumps a version counter in Redis
(tenants.events), which every process polls (`CredentialCache.watch`), so a revocation or
rotation is in force everywhere within `POLL_INTERVAL_S` plus one round trip.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

import structlog
from asgiref.sync import sync_to_async
from redis.asyncio import Redis
from redis.exceptions import RedisError

from billing.selectors import BudgetConfig, budget_configs_for
from gateway.errors import GatewayError
from tenants import keys
from tenants.events import VERSION_KEY as CREDENTIALS_VERSION_KEY
from tenants.selectors import CredentialRecord, credential_record

log = structlog.get_logger(__name__)

POLL_INTERVAL_S = 0.25
# A safety net only: entries are normally dropped by the version watch long before this.
ENTRY_TTL_S = 300.0


@dataclass(frozen=True, slots=True)
class Credential:
    """What the cache holds per key: the key's record and the budgets it counts against."""

    record: CredentialRecord
    budgets: tuple[BudgetConfig, ...]


@dataclass(frozen=True, slots=True)
class Caller:
    record: CredentialRecord
    budgets: tuple[BudgetConfig, ...]
    secret_id: int | None
    # Set when the secret used was rotated out and is in its grace period.
    deprecated_at: datetime | None
    deprecated_until: datetime | None

    @property
    def tenant_id(self) -> int:
        return self.record.tenant_id

    @property
    def key_id(self) -> int:
        return self.record.key_id


def presented_key(headers: dict[str, str]) -> str | None:
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    return headers.get("api-key") or headers.get("x-api-key")


class CredentialCache:
    """Process-local cache of credential records, dropped whenever the Redis version changes.

    A missing entry is loaded once however many requests ask for it at the same moment (a
    cleared cache under load would otherwise send one query per waiting request), and a load
    that was already under way when the cache was cleared is not kept: it may have read the
    key before the change that cleared it (a revocation)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        load: Callable[[str], Awaitable[Credential | None]] | None = None,
    ) -> None:
        self.clock = clock
        self._entries: dict[str, tuple[float, Credential | None]] = {}
        self._loading: dict[str, asyncio.Task[Credential | None]] = {}
        self._generation = 0  # bumped by clear()
        self._version: bytes | None = None
        self._listeners: list[Callable[[], None]] = []
        self._load = load or sync_to_async(_load_record, thread_sensitive=False)

    async def get(self, key_public_id: str) -> Credential | None:
        entry = self._entries.get(key_public_id)
        if entry is not None and self.clock() - entry[0] < ENTRY_TTL_S:
            return entry[1]
        loading = self._loading.get(key_public_id)
        if loading is None:
            loading = asyncio.ensure_future(self._fill(key_public_id, self._generation))
            self._loading[key_public_id] = loading
        # Shielded: a waiter that goes away must not cancel the load the others wait for.
        return await asyncio.shield(loading)

    async def _fill(self, key_public_id: str, generation: int) -> Credential | None:
        try:
            record = await self._load(key_public_id)
        finally:
            if self._generation == generation:
                self._loading.pop(key_public_id, None)
        if self._generation == generation:
            self._entries[key_public_id] = (self.clock(), record)
        return record

    def on_change(self, listener: Callable[[], None]) -> None:
        """Also call `listener` whenever credentials may have changed (e.g. drop the router's
        cached tenant overrides: their changes bump the same version)."""
        self._listeners.append(listener)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._loading.clear()  # requests from now on load afresh
        for listener in self._listeners:
            listener()

    async def refresh_version(self, redis: Redis) -> None:
        version = await redis.get(CREDENTIALS_VERSION_KEY)
        if version != self._version:
            self._version = version
            self.clear()

    async def watch(self, redis: Redis) -> None:
        """Run for the life of the process: drop the cache whenever credentials change."""
        while True:
            try:
                await self.refresh_version(redis)
            except RedisError as exc:
                # Without the version we cannot know about revocations: stop trusting the cache.
                self.clear()
                log.warning("credential_watch_failed", error=type(exc).__name__)
            await asyncio.sleep(POLL_INTERVAL_S)


def _load_record(key_public_id: str) -> Credential | None:
    record = credential_record(key_public_id=key_public_id)
    if record is None:
        return None
    budgets = budget_configs_for(tenant_id=record.tenant_id, api_key_id=record.key_id)
    return Credential(record=record, budgets=tuple(budgets))


async def authenticate(
    headers: dict[str, str], cache: CredentialCache, *, now: datetime | None = None
) -> Caller:
    raw_key = presented_key(headers)
    if not raw_key:
        raise _invalid_key(
            "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."
        )
    parsed = keys.parse(raw_key)
    if parsed is None:
        raise _invalid_key("Incorrect API key provided.")
    credential = await cache.get(parsed.key_id)
    if credential is None or credential.record.is_revoked:
        raise _invalid_key("Incorrect API key provided.")
    record = credential.record
    now = now or datetime.now(UTC)
    secret = record.match(parsed.digest, now)
    if secret is None:
        if any(hmac.compare_digest(s.digest, parsed.digest) for s in record.secrets):
            raise _expired_key("This API key was rotated and its grace period has ended.")
        raise _invalid_key("Incorrect API key provided.")
    if record.is_expired(now):
        raise _expired_key("This API key has expired.")
    if not record.is_tenant_active:
        raise GatewayError(403, "This tenant is suspended.", code="tenant_suspended")
    return Caller(
        record=record,
        budgets=credential.budgets,
        secret_id=secret.secret_id,
        deprecated_at=record.deprecated_at(secret),
        deprecated_until=secret.deprecated_until if secret.is_deprecated else None,
    )


def deprecation_headers(caller: Caller) -> list[tuple[str, str]]:
    """RFC 9745 `Deprecation` (when it was deprecated) and RFC 8594 `Sunset` (when it stops)."""
    if caller.deprecated_until is None:
        return []
    headers = [("sunset", format_datetime(caller.deprecated_until, usegmt=True))]
    if caller.deprecated_at is not None:
        headers.append(("deprecation", f"@{int(caller.deprecated_at.timestamp())}"))
    return headers


def _invalid_key(message: str) -> GatewayError:
    return GatewayError(401, message, code="invalid_api_key")


def _expired_key(message: str) -> GatewayError:
    return GatewayError(401, message, code="api_key_expired")
