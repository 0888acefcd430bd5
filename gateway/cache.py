"""Response cache: exact match on a canonical form of the request, per tenant, in Redis.

Contract:
- Key: `aicc:cache:{tenant_id}:{chat|cmpl|emb}:{blake2b-128 of the canonical request}`. The
  canonical request is the payload (after routing, so `model` is the served model) without
  the fields that cannot change the answer (IGNORED_FIELDS), with `n: 1` dropped and integral
  top-level floats written as ints (`temperature: 0.0` == `0`), serialised with sorted keys.
  The tenant id is in the key, in the hashed bytes, and in the stored entry, which is checked
  again on every read: an answer is never served to another tenant.
- What is cached: only status-200 answers, as the non-streamed body; a streamed miss is stored
  once its stream completed (assembled by gateway.cache_replay). A hit returns the stored bytes
  unchanged, or replays them as SSE for a streaming request.
- When: `decide()`. Chat and completions only when deterministic (`temperature` explicitly 0
  and `n` absent or 1); embeddings always (the same input gives the same vector). Never when
  the tenant's switch is off. Request header `X-AICC-Cache: no-cache` skips the read but
  stores the fresh answer; `no-store` skips both; other values are ignored. The response
  header says HIT, MISS (looked up, not found) or BYPASS (not looked up).
- Failure: Redis errors and timeouts never fail a request: a read is a miss, a write is
  skipped, and `cache_unavailable` is logged. Nothing of a prompt or answer is ever logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.cache_replay import STREAMABLE_ENDPOINTS, assemble_stream_body, replay_as_sse
from gateway.context import Usage
from gateway.http import Response, StreamResponse

if TYPE_CHECKING:
    from gateway.context import RequestContext

log = structlog.get_logger(__name__)

CACHE_HEADER = "x-aicc-cache"
KEY_PREFIX = "aicc:cache"
ENTRY_VERSION = 1
ENDPOINT_TAGS = {"/v1/chat/completions": "chat", "/v1/completions": "cmpl", "/v1/embeddings": "emb"}
EMBEDDINGS_ENDPOINT = "/v1/embeddings"
# Fields that change how an answer is delivered or recorded, never what it says: the stream
# flags (a stored answer serves both), OpenAI's end-user/abuse identifiers, stored-completion
# options and its prompt-cache routing hint. Everything else (seed, tools, response_format,
# max_tokens, service_tier, ...) is part of the key, unknown fields included.
IGNORED_FIELDS = frozenset(
    {"stream", "stream_options", "user", "safety_identifier", "metadata", "store",
     "prompt_cache_key"}
)  # fmt: skip
# Streams longer than this are assembled off the event loop (measured ~2-5 µs per event).
THREAD_ASSEMBLY_MIN_EVENTS = 500
NO_CACHE = "no-cache"
NO_STORE = "no-store"


class CacheStatus(StrEnum):
    HIT = "HIT"
    MISS = "MISS"
    BYPASS = "BYPASS"


# --- keys and decisions (pure) ---------------------------------------------------------------


def canonical_request(payload: dict[str, Any]) -> bytes:
    canonical = {
        name: _canonical_number(value)
        for name, value in payload.items()
        if name not in IGNORED_FIELDS and not (name == "n" and value == 1)
    }
    return orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)


def _canonical_number(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def cache_key(tenant_id: int, endpoint: str, payload: dict[str, Any]) -> str:
    tag = ENDPOINT_TAGS[endpoint]
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"v{ENTRY_VERSION}\0{tenant_id}\0{endpoint}\0".encode())
    digest.update(canonical_request(payload))
    return f"{KEY_PREFIX}:{tenant_id}:{tag}:{digest.hexdigest()}"


def tenant_key_pattern(tenant_id: int) -> str:
    return f"{KEY_PREFIX}:{int(tenant_id)}:*"


def is_deterministic(payload: dict[str, Any], endpoint: str) -> bool:
    if endpoint == EMBEDDINGS_ENDPOINT:
        return True
    if endpoint not in ENDPOINT_TAGS:
        return False
    temperature = payload.get("temperature")
    is_zero = (
        isinstance(temperature, int | float)
        and not isinstance(temperature, bool)
        and temperature == 0
    )
    return is_zero and payload.get("n") in (None, 1)


def parse_directives(header_value: str | None) -> frozenset[str]:
    """`X-AICC-Cache` as a set of known directives; unknown ones are ignored, like HTTP caches
    ignore unknown Cache-Control directives (refusing would break clients for a hint)."""
    if not header_value:
        return frozenset()
    found = {part.strip().lower() for part in header_value.split(",")}
    return frozenset(found & {NO_CACHE, NO_STORE})


@dataclass(frozen=True, slots=True)
class CachePolicy:
    is_lookup: bool
    is_store: bool

    @property
    def status(self) -> CacheStatus:
        """The response header when there is no hit."""
        return CacheStatus.MISS if self.is_lookup else CacheStatus.BYPASS


BYPASS = CachePolicy(is_lookup=False, is_store=False)


def decide(
    payload: dict[str, Any], endpoint: str, *, is_tenant_enabled: bool, header_value: str | None
) -> CachePolicy:
    directives = parse_directives(header_value)
    if not is_tenant_enabled or NO_STORE in directives or not is_deterministic(payload, endpoint):
        return BYPASS
    if NO_CACHE in directives:
        return CachePolicy(is_lookup=False, is_store=True)
    return CachePolicy(is_lookup=True, is_store=True)


# --- entries -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    tenant_id: int
    endpoint: str
    served_model: str
    body: bytes
    prompt_tokens: int
    completion_tokens: int
    stored_at: float

    def encode(self) -> bytes:
        # Metadata line, newline, body: the body's bytes are kept exactly as they were sent
        # (orjson never writes a raw newline, so the first one ends the metadata).
        meta = {
            "v": ENTRY_VERSION,
            "tenant_id": self.tenant_id,
            "endpoint": self.endpoint,
            "served_model": self.served_model,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "stored_at": self.stored_at,
        }
        return orjson.dumps(meta) + b"\n" + self.body

    @classmethod
    def decode(cls, raw: bytes) -> CachedAnswer:
        """Raises ValueError for anything but a current, well-formed entry."""
        meta_bytes, separator, body = raw.partition(b"\n")
        try:
            meta = orjson.loads(meta_bytes)
        except orjson.JSONDecodeError:
            raise ValueError("entry metadata is not JSON") from None
        if not separator or not isinstance(meta, dict) or meta.get("v") != ENTRY_VERSION:
            raise ValueError("not a current cache entry")
        try:
            return cls(
                tenant_id=int(meta["tenant_id"]),
                endpoint=str(meta["endpoint"]),
                served_model=str(meta["served_model"]),
                body=body,
                prompt_tokens=int(meta["prompt_tokens"]),
                completion_tokens=int(meta["completion_tokens"]),
                stored_at=float(meta["stored_at"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"entry metadata lacks {exc}") from None


@dataclass(frozen=True, slots=True)
class CacheLookup:
    """The cache's part of one request: what it may do, under which key, what it found."""

    tenant_id: int
    endpoint: str
    # The model the key was built for (the routed one); an answer of another model (a
    # fallback's) is not stored under this key.
    model: str
    policy: CachePolicy
    key: str | None
    hit: CachedAnswer | None = None

    @property
    def status(self) -> CacheStatus:
        return CacheStatus.HIT if self.hit is not None else self.policy.status

    def header(self) -> tuple[str, str]:
        return (CACHE_HEADER, self.status.value)


# --- Redis -------------------------------------------------------------------------------------


class ResponseCache:
    """Reads and writes entries; every Redis failure is a miss or a skipped write.

    `redis` must return bytes (no `decode_responses`). `timeout_s` bounds each call: a cache
    that waits longer than a healthy Redis ever takes saves nothing.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        ttl_s: int,
        max_entry_bytes: int,
        timeout_s: float = 0.1,
        is_enabled: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self.max_entry_bytes = max_entry_bytes
        self.timeout_s = timeout_s
        self.is_enabled = is_enabled
        self.clock = clock

    async def lookup(
        self,
        *,
        tenant_id: int,
        endpoint: str,
        payload: dict[str, Any],
        is_tenant_enabled: bool,
        header_value: str | None,
    ) -> CacheLookup:
        """Decide, build the key, read it when allowed. Call after routing has set the model."""
        policy = decide(
            payload,
            endpoint,
            is_tenant_enabled=self.is_enabled and is_tenant_enabled,
            header_value=header_value,
        )
        model = str(payload.get("model"))
        if not (policy.is_lookup or policy.is_store):
            return CacheLookup(tenant_id, endpoint, model, policy, key=None)
        key = cache_key(tenant_id, endpoint, payload)
        hit = await self.get(key, tenant_id, endpoint=endpoint) if policy.is_lookup else None
        return CacheLookup(tenant_id, endpoint, model, policy, key=key, hit=hit)

    async def get(
        self, key: str, tenant_id: int, *, endpoint: str | None = None
    ) -> CachedAnswer | None:
        try:
            async with asyncio.timeout(self.timeout_s):
                raw = await self.redis.get(key)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("cache_unavailable", operation="get", error=type(exc).__name__)
            return None
        if raw is None:
            return None
        if isinstance(raw, str):
            raise TypeError("the response cache needs a Redis client that returns bytes")
        try:
            answer = CachedAnswer.decode(raw)
        except ValueError as exc:
            log.warning("cache_entry_invalid", tenant_id=tenant_id, reason=str(exc))
            return None
        if answer.tenant_id != tenant_id or not key.startswith(f"{KEY_PREFIX}:{tenant_id}:"):
            # Should be impossible (the tenant is in the key and its hash): refuse loudly.
            log.error("cache_entry_tenant_mismatch", tenant_id=tenant_id, key=key)
            return None
        if endpoint is not None and answer.endpoint != endpoint:
            return None
        return answer

    async def put(self, key: str, answer: CachedAnswer) -> bool:
        """Store with the TTL; False when too large or Redis failed."""
        if not key.startswith(f"{KEY_PREFIX}:{answer.tenant_id}:"):
            raise ValueError("a cache entry must be stored under its own tenant's key")
        encoded = answer.encode()
        if len(encoded) > self.max_entry_bytes:
            log.info("cache_entry_too_large", tenant_id=answer.tenant_id, size_bytes=len(encoded))
            return False
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.redis.set(key, encoded, ex=self.ttl_s)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("cache_unavailable", operation="put", error=type(exc).__name__)
            return False
        return True

    async def store(
        self, lookup: CacheLookup, body: bytes, *, usage: Usage | None, served_model: str
    ) -> bool:
        """Store a status-200 non-stream body the lookup allows storing; False otherwise.

        `served_model` is the model that answered (ctx.served_model after the upstream call)."""
        if not lookup.policy.is_store or lookup.key is None or served_model != lookup.model:
            return False
        answer = CachedAnswer(
            tenant_id=lookup.tenant_id,
            endpoint=lookup.endpoint,
            served_model=served_model,
            body=body,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            stored_at=self.clock(),
        )
        return await self.put(lookup.key, answer)

    async def store_stream(
        self,
        lookup: CacheLookup,
        events: Iterable[bytes],
        *,
        usage: Usage | None,
        served_model: str,
    ) -> bool:
        """Store a stream that ended normally, as its non-stream body; False otherwise.

        Call it after the last event went out (the client is not kept waiting)."""
        if not lookup.policy.is_store or lookup.key is None or served_model != lookup.model:
            return False
        events = list(events)
        if len(events) > THREAD_ASSEMBLY_MIN_EVENTS:
            # A few µs per event: a long answer would hold the event loop for tens of ms in one
            # go; in a thread the loop gets the GIL back every switch interval (5 ms).
            body = await asyncio.to_thread(assemble_stream_body, events, lookup.endpoint)
        else:
            body = assemble_stream_body(events, lookup.endpoint)
        if body is None:
            return False
        return await self.store(lookup, body, usage=usage, served_model=served_model)

    async def purge_tenant(self, tenant_id: int) -> int:
        """Drop every entry of one tenant (switch turned off, data request). Not for the hot
        path: it scans the keyspace. Redis errors propagate to the operator."""
        removed = 0
        batch: list[bytes] = []
        async for key in self.redis.scan_iter(match=tenant_key_pattern(tenant_id), count=500):
            batch.append(key)
            if len(batch) >= 500:
                removed += await self.redis.unlink(*batch)
                batch.clear()
        if batch:
            removed += await self.redis.unlink(*batch)
        return removed

    # --- answering from the cache ----------------------------------------------------------

    def respond(self, ctx: RequestContext, hit: CachedAnswer) -> Response | StreamResponse:
        """The hit as the client's answer; marks `ctx` as a zero-cost cache hit."""
        ctx.is_cache_hit = True
        ctx.usage = Usage()  # the upstream processed nothing: zero tokens, zero cost
        ctx.upstream_cost = None
        ctx.served_model = hit.served_model or ctx.served_model
        headers = [("age", str(max(0, int(self.clock() - hit.stored_at))))]
        if ctx.is_streamed and hit.endpoint in STREAMABLE_ENDPOINTS:
            stream_options = (ctx.payload or {}).get("stream_options") or {}
            events = replay_as_sse(
                hit.body, hit.endpoint, include_usage=stream_options.get("include_usage") is True
            )
            return StreamResponse(_first_byte_marked(ctx, events), headers=headers)
        return Response(200, hit.body, headers=headers)


async def _first_byte_marked(
    ctx: RequestContext, events: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    async for event in events:
        ctx.mark_first_byte()
        yield event
