"""Routing on the hot path: detectors -> policy (+ the tenant's override) -> the served model.

`Router` is process-wide (one per gateway process, held by the Runtime). It loads the policy
file when constructed, so an invalid file stops start-up (ImproperlyConfigured naming the field
paths). `start()` runs two background tasks for the life of the process:
- the policy watch (watchfiles): a change to the file is validated and swapped in atomically
  (one attribute assignment) within ~0.1 s; an invalid change logs `policy_reload_failed` and
  the last good policy stays in force;
- the override watch: per-tenant overrides are cached per process (no query per request) and
  dropped whenever the Redis counter tenants.events.VERSION_KEY moves (every override save
  bumps it), polled like the credential cache.

`route()` logs nothing itself: it leaves its decision in `ctx.route_fields` (detector kinds,
verdicts and signal names, never request text), which the request's one `request_completed`
line carries (gateway.app). Embeddings are served as requested without running detectors:
there is no local embedding model to fall back to, and embedding input is data, not
instructions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
import watchfiles
from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

from gateway.errors import GatewayError
from gateway.overrides import routing_override_document
from gateway.policy import (
    LoadedPolicy,
    PolicyError,
    apply_override,
    default_policy_path,
    load_policy,
    parse_override,
)
from gateway.policy_schema import AUTO, Policy
from gateway.router import INJECTION_BLOCK, PRIVACY_BLOCK, Decision, assess, decide

if TYPE_CHECKING:
    from gateway.context import RequestContext

log = structlog.get_logger(__name__)

ROUTED_MODEL_HEADER = "x-aicc-routed-model"
ROUTE_REASON_HEADER = "x-aicc-route-reason"
ROUTE_FLAGS_HEADER = "x-aicc-route-flags"
EMBEDDINGS_PATH = "/v1/embeddings"
# watchfiles waits this long for more events before yielding a batch (its default, 1.6 s,
# would eat most of the 2 s reload budget).
WATCH_DEBOUNCE_MS = 50
WATCH_RETRY_S = 1.0


class Router:
    def __init__(
        self,
        path: Path | str | None = None,
        *,
        extra_known_models: frozenset[str] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        load_override: Callable[..., Awaitable[str | None]] | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else default_policy_path()
        self.extra_known_models = extra_known_models
        self.clock = clock
        try:
            self._active = load_policy(self.path, extra_known_models=extra_known_models)
        except PolicyError as exc:
            raise ImproperlyConfigured(str(exc)) from exc
        # tenant id -> the policy with its override applied (the base policy when it has none).
        self._tenant_policies: dict[int, Policy] = {}
        self._override_generation = 0
        self._pending: dict[int, asyncio.Future[Policy]] = {}
        self._load_override = load_override or sync_to_async(
            routing_override_document, thread_sensitive=False
        )
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def active(self) -> LoadedPolicy:
        return self._active

    def snapshot(self) -> dict[str, Any]:
        """For /health/detailed: which policy is in force, since when, from where."""
        return {**self._active.snapshot(), "tenant_overrides_cached": len(self._tenant_policies)}

    # --- the hot path ---------------------------------------------------------------------

    async def route(
        self,
        ctx: RequestContext,
        payload: dict[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Decide the served model, write it into `payload` and `ctx`, add the headers.

        Raises GatewayError(400) when the policy blocks the request."""
        started = self.clock()
        requested = payload["model"]
        caller = ctx.caller
        if ctx.endpoint == EMBEDDINGS_PATH:
            if requested == AUTO:
                raise GatewayError(
                    400, "Model 'auto' is not available for embeddings; name a model.",
                    code="model_not_found", param="model",
                )  # fmt: skip
            self._apply(ctx, payload, Decision("serve", requested, "requested"))
            return
        policy = self._active.policy
        if caller is not None:
            policy = await self._policy_for_tenant(caller.record.tenant_id)
            started = self.clock()  # a first-use override fetch is I/O, not decision time
        found = assess(policy, payload)
        signals = found.signals(
            requested,
            tenant_slug=caller.record.tenant_slug if caller is not None else None,
            headers=headers,
        )
        decision = decide(policy, signals)
        ctx.route_fields = {
            "routed_model": decision.model,
            "route_action": decision.action,
            "route_flags": list(decision.flags),
            "pii_kinds": [kind for kind, _ in found.privacy.counts],
            "complexity_tier": found.complexity.tier,
            "complexity_score": found.complexity.score,
            "injection_verdict": found.injection.verdict,
            "injection_signals": list(found.injection.signals),
            "policy_version": self._active.version,
            "route_latency_ms": round((self.clock() - started) * 1000, 3),
        }
        self._apply(ctx, payload, decision)

    def _apply(self, ctx: RequestContext, payload: dict[str, Any], decision: Decision) -> None:
        # The routed-model and reason headers are written from ctx when the response goes out
        # (gateway.app), since a fallback may still change both.
        ctx.route_reason = decision.reason
        if decision.flags:
            ctx.response_headers.append((ROUTE_FLAGS_HEADER, ",".join(decision.flags)))
        if decision.is_blocked:
            raise _blocked(decision.reason)
        assert decision.model is not None
        ctx.served_model = decision.model
        payload["model"] = decision.model

    # --- tenant overrides -----------------------------------------------------------------

    async def _policy_for_tenant(self, tenant_id: int) -> Policy:
        policy = self._tenant_policies.get(tenant_id)
        if policy is not None:
            return policy
        # One read per tenant however many requests arrive while it runs.
        pending = self._pending.get(tenant_id)
        if pending is None:
            pending = asyncio.ensure_future(self._read_tenant_policy(tenant_id))
            self._pending[tenant_id] = pending
            pending.add_done_callback(lambda done: self._forget_read(tenant_id, done))
        return await asyncio.shield(pending)

    def _forget_read(self, tenant_id: int, read: asyncio.Future[Policy]) -> None:
        if self._pending.get(tenant_id) is read:  # not a newer read started after a clear
            del self._pending[tenant_id]

    async def _read_tenant_policy(self, tenant_id: int) -> Policy:
        generation, loaded = self._override_generation, self._active
        try:
            document = await self._load_override(tenant_id=tenant_id)
        except DatabaseError as exc:
            # Fail closed: the override may hold this tenant's privacy patterns or blocks.
            log.error("tenant_override_load_failed", tenant_id=tenant_id, error=type(exc).__name__)
            raise GatewayError(
                503, "The routing policy is unavailable; retry shortly.", code="service_unavailable"
            ) from exc
        policy = loaded.policy
        if document is not None:
            try:
                override = parse_override(
                    document, known_models=loaded.known_models, source=f"override:{tenant_id}"
                )
                policy = apply_override(loaded.policy, override, source=f"override:{tenant_id}")
            except PolicyError as exc:
                # Saved valid, but the policy has changed under it: run on the policy alone.
                log.error("tenant_override_invalid", tenant_id=tenant_id, problems=exc.problems)
        # Cleared while we read (a save or a policy reload): the answer may be stale, so it
        # serves only the requests that were already waiting for it and is not cached.
        if generation == self._override_generation and loaded is self._active:
            self._tenant_policies[tenant_id] = policy
        return policy

    def clear_overrides(self) -> None:
        self._override_generation += 1
        self._tenant_policies.clear()
        self._pending.clear()  # requests from now on read afresh

    # --- the policy file ------------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the file; swap it in if valid and changed. Returns whether it swapped."""
        try:
            loaded = load_policy(self.path, extra_known_models=self.extra_known_models)
        except PolicyError as exc:
            log.error(
                "policy_reload_failed",
                path=str(self.path),
                problems=exc.problems,
                version_in_force=self._active.version,
            )
            return False
        if loaded.version == self._active.version:
            return False
        previous, self._active = self._active, loaded
        self.clear_overrides()
        log.info("policy_reloaded", version=loaded.version, previous_version=previous.version)
        return True

    async def _watch_file(self) -> None:
        # Watch the directory, not the file: editors and config-map updates replace the file
        # (new inode), which a watch on the file itself would miss. Any event in the directory
        # triggers a re-read; an unchanged hash is a no-op, so unrelated files cost one read.
        while not self._stop.is_set():
            try:
                async for _ in watchfiles.awatch(
                    self.path.parent,
                    debounce=WATCH_DEBOUNCE_MS,
                    step=WATCH_DEBOUNCE_MS,
                    recursive=False,
                    stop_event=self._stop,
                ):
                    await asyncio.to_thread(self.reload)
            except Exception as exc:  # e.g. the directory vanished; keep the policy, retry
                log.error("policy_watch_failed", path=str(self.path), error=repr(exc))
            if not self._stop.is_set():
                await asyncio.sleep(WATCH_RETRY_S)
                # Events while the watch was down are lost; catch up.
                await asyncio.to_thread(self.reload)

    async def start(self) -> None:
        """Start the policy file watch. Tenant overrides are dropped by `clear_overrides`, which
        the credential cache calls whenever the shared version moves (gateway.runtime)."""
        self._stop.clear()
        self._tasks.append(asyncio.create_task(self._watch_file()))
        log.info("policy_loaded", **self._active.snapshot())

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


def _blocked(reason: str) -> GatewayError:
    if reason == INJECTION_BLOCK:
        return GatewayError(
            400,
            "The request was refused because it looks like a prompt injection.",
            code="prompt_injection_detected",
        )
    if reason == PRIVACY_BLOCK:
        return GatewayError(
            400,
            "The request was refused because it contains data the policy does not allow.",
            code="sensitive_data_blocked",
        )
    return GatewayError(
        400, "The request was refused by the routing policy.", code="request_blocked_by_policy"
    )
