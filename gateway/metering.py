"""Admission and settlement of one request: rate limits, budget reservation, the usage event.

`Meter.admit` runs before forwarding: ONE Redis round trip reserves the worst-case cost on the
budgets and checks the key's and tenant's rate limits, all or nothing. With ample headroom
it may run beside the forwarding instead (`may_forward_early`, gateway.early_forward).

`Meter.settle` runs once when the answer is over (sent, failed, or abandoned by the client):
ONE round trip corrects the token count, frees the concurrency slot, charges the actual cost,
and appends the usage event to the Redis stream that billing drains into the ledger
(gateway.meter_scripts). No database write on the hot path; if Redis is unreachable the event
is written to the ledger directly instead (never lost).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import structlog
from asgiref.sync import sync_to_async
from django.conf import settings
from redis.asyncio import Redis

from billing import pricing
from billing.events import UsageEvent, encode
from billing.models import ModelPrice
from billing.selectors import BudgetConfig
from billing.services import budget_soft_limit_alert
from gateway import tokens
from gateway.budgets import (
    Budget,
    BudgetRef,
    BudgetReservations,
    ReservationResult,
    ReserveCall,
    ReserveStatus,
    prepare_settle,
    settle_result,
)
from gateway.early_forward import HeadroomMemo
from gateway.errors import GatewayError
from gateway.limits import (
    AdmitCall,
    LimiterUnavailable,
    RateLimiter,
    RateLimitResult,
    RatePolicy,
    Scope,
    ScopeLimits,
)
from gateway.meter_scripts import MeterScripts
from gateway.prices import PriceCache
from gateway.rate_limit_headers import rate_limit_headers
from gateway.recovery import budget_counter_rebuild, budget_from_config, usage_event_write_direct

if TYPE_CHECKING:
    from gateway.context import RequestContext

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Ticket:
    """What admission reserved, so settlement can correct it exactly once."""

    request_id: str
    started_at: datetime
    rate: RateLimitResult | None
    budgets: tuple[tuple[Budget, BudgetConfig], ...]
    price: ModelPrice | None
    is_reserved: bool = False
    is_settled: bool = False


@functools.lru_cache(maxsize=4096)
def _metered(configs: tuple[BudgetConfig, ...]) -> tuple[tuple[Budget, BudgetConfig], ...]:
    """The key's budgets as the counters see them; the same configs for every request of a key
    until its budgets change, so built once (a key's cached credential holds the configs)."""
    return tuple((budget_from_config(config), config) for config in configs)


def _policy(limits: Any) -> RatePolicy:
    return RatePolicy(
        requests_per_minute=limits.rpm,
        tokens_per_minute=limits.tpm,
        max_concurrent=limits.max_concurrency,
    )


def _has_limits(policy: RatePolicy) -> bool:
    return any(
        value is not None
        for value in (policy.requests_per_minute, policy.tokens_per_minute, policy.max_concurrent)
    )


class Meter:
    def __init__(self, redis: Redis, prices: PriceCache) -> None:
        self.redis = redis
        self.prices = prices
        self.limiter = RateLimiter(
            redis,
            fail_open=settings.AICC_RATE_LIMIT_FAIL_OPEN,
            timeout_s=settings.REDIS_TIMEOUT_S,
        )
        self.reservations = BudgetReservations(redis, timeout_s=settings.REDIS_TIMEOUT_S)
        self.scripts = MeterScripts(redis, timeout_s=settings.REDIS_TIMEOUT_S)
        self.headroom = HeadroomMemo(is_enabled=settings.AICC_EARLY_FORWARD)

    def may_forward_early(self, ctx: RequestContext, payload: dict[str, Any], body: bytes) -> bool:
        """Whether it may be forwarded while its admission runs (gateway.early_forward)."""
        caller = ctx.caller
        assert caller is not None
        last = self.headroom.usable(caller.record.key_public_id, in_flight=ctx.runtime.in_flight)
        if last is None:
            return False
        max_output_tokens = _max_output_tokens(payload, ctx.endpoint)

        def max_cost() -> Decimal | None:
            price = self.prices.book.price_for(_model_of(ctx), datetime.now(UTC))
            return None if price is None else _max_cost(price, body, max_output_tokens)

        return last.covers(_tokens_needed(body, max_output_tokens), max_cost)

    async def admit(
        self,
        ctx: RequestContext,
        payload: dict[str, Any],
        body: bytes,
        *,
        is_cache_hit: bool = False,
    ) -> None:
        caller = ctx.caller
        assert caller is not None
        ticket = Ticket(
            request_id=uuid.uuid4().hex,
            started_at=datetime.now(UTC),
            rate=None,
            budgets=_metered(caller.budgets),
            price=None,
        )
        max_output_tokens = _max_output_tokens(payload, ctx.endpoint)
        rate_call = self._rate_call(ctx, ticket, body, max_output_tokens)
        # A cache hit costs nothing, so it reserves no budget (and is served over budget too).
        budget_call = (
            self._budget_call(ctx, ticket, body, max_output_tokens)
            if ticket.budgets and not is_cache_hit
            else None
        )
        if rate_call is None and budget_call is None:
            ctx.ticket = ticket
            return
        # One script reserves the budget and checks the rate limits, all or nothing.
        for _attempt in range(3):
            try:
                rate_reply, budget_reply = await self.scripts.admit(rate_call, budget_call)
            except LimiterUnavailable:
                self.headroom.forget_key(caller.record.key_public_id)
                if budget_call is None and self.limiter.fail_open:
                    ticket.rate = rate_call.fail_open_result()  # type: ignore[union-attr]
                    ctx.ticket = ticket
                    return
                raise _unavailable("budgets" if budget_call else "rate limits") from None
            reservation = budget_call.result(budget_reply) if budget_call and budget_reply else None
            if reservation is None or reservation.status != ReserveStatus.COUNTER_MISSING:
                break
            await self._rebuild(reservation.missing, ticket)
        rate = rate_call.result(rate_reply) if rate_call is not None and rate_reply else None
        self.headroom.note(caller.record.key_public_id, rate, reservation)
        # A rate refusal already gave the reservation back inside the script.
        if rate is not None:
            ticket.rate = self._check_rate(ctx, rate)
        if reservation is not None:
            self._check_reservation(ticket, reservation)
        # Only admitted requests are metered; refusals are counted by the metrics, not billed.
        ctx.ticket = ticket

    def _rate_call(
        self, ctx: RequestContext, ticket: Ticket, body: bytes, max_output_tokens: int
    ) -> AdmitCall | None:
        record = ctx.caller.record  # type: ignore[union-attr]
        key = ScopeLimits(Scope.KEY, record.key_public_id, _policy(record.key_limits))
        tenant = ScopeLimits(Scope.TENANT, str(record.tenant_id), _policy(record.tenant_limits))
        if not (_has_limits(key.policy) or _has_limits(tenant.policy)):
            return None
        return self.limiter.prepare_admit(
            request_id=ticket.request_id,
            key=key,
            tenant=tenant,
            estimated_tokens=_tokens_needed(body, max_output_tokens),
        )

    def _check_rate(self, ctx: RequestContext, result: RateLimitResult) -> RateLimitResult:
        ctx.response_headers.extend(rate_limit_headers(result))
        if not result.admitted:
            kind = result.rejected_kind.value if result.rejected_kind else "requests"
            scope = result.rejected_scope.value if result.rejected_scope else "key"
            message = (
                f"This request can never fit the {scope}'s {kind} per minute limit."
                if result.is_request_too_large
                else f"Rate limit reached for {kind} on this {scope}. "
                f"Retry after {result.retry_after_s} s."
            )
            raise GatewayError(429, message, code="rate_limit_exceeded")
        return result

    def _budget_call(
        self, ctx: RequestContext, ticket: Ticket, body: bytes, max_output_tokens: int
    ) -> ReserveCall | None:
        model = _model_of(ctx)
        ticket.price = self.prices.book.price_for(model, ticket.started_at)
        if ticket.price is None:
            raise GatewayError(
                400,
                f"The model '{model}' has no price, so its budget cannot be enforced.",
                code="model_not_priced",
                param="model",
            )
        max_cost = _max_cost(ticket.price, body, max_output_tokens)
        by_scope = {budget.scope: budget for budget, _ in ticket.budgets}
        return self.reservations.prepare_reserve(
            ticket.request_id, by_scope.get(Scope.TENANT), by_scope.get(Scope.KEY), max_cost
        )

    def _check_reservation(self, ticket: Ticket, result: ReservationResult) -> None:
        if result.status == ReserveStatus.RESERVED:
            ticket.is_reserved = True
            return
        if result.status == ReserveStatus.REJECTED and result.rejected_by is not None:
            raise GatewayError(
                429,
                f"This request would exceed the {_describe(result.rejected_by)} "
                f"(spent ${result.spent_usd} of ${_limit_of(ticket, result.rejected_by)}).",
                code="insufficient_quota",
            )
        raise _unavailable("budgets")

    async def _rebuild(self, missing: BudgetRef | None, ticket: Ticket) -> None:
        for budget, config in ticket.budgets:
            if missing is None or (budget.scope, budget.owner_id) == (
                missing.scope,
                missing.owner_id,
            ):
                await budget_counter_rebuild(self.reservations, budget, config)

    async def settle(self, ctx: RequestContext) -> None:
        """Charge what was used and record the event. Runs once, whatever happened."""
        ticket = ctx.ticket
        if ticket is None or ticket.is_settled or ctx.caller is None:
            return
        ticket.is_settled = True
        usage = ctx.final_usage()
        # Priced as served: a fallback may have answered with another model than was reserved.
        served_model = _model_of(ctx)
        price = self.prices.book.price_for(served_model, ticket.started_at) or ticket.price
        if ctx.is_cache_hit:
            # Answered from the response cache: nothing was bought, not even a per-request fee.
            cost: Decimal | None = Decimal(0)
        elif price is not None:
            cost = pricing.cost_usd(
                price,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cached_tokens=usage.cached_tokens,
            )
        else:
            cost = None
        ctx.cost_usd = cost
        event = self._event(ctx, ticket, cost)
        admission = ticket.rate.admission if ticket.rate is not None else None
        rate_call = (
            self.limiter.prepare_end(
                admission,
                actual_tokens=usage.prompt_tokens + usage.completion_tokens,
                is_release=True,
            )
            if admission is not None
            else None
        )
        budget_call = (
            prepare_settle(ticket.request_id, cost or Decimal(0)) if ticket.is_reserved else None
        )
        # One script corrects the counters and appends the usage event.
        try:
            budget_reply = await self.scripts.settle(rate_call, budget_call, encode(event))
        except LimiterUnavailable:
            # The leases expire and free the holds; the ledger keeps the truth and a lost
            # counter is rebuilt from it. The event itself must not be lost.
            log.warning("usage_stream_unavailable", request_id=ticket.request_id)
            try:
                await usage_event_write_direct(event)
            except Exception:
                log.exception("usage_event_write_failed", request_id=ticket.request_id)
            return
        if rate_call is not None:
            rate_call.applied()
        if budget_reply is not None:
            for ref in settle_result(budget_reply).soft_limit_crossed:
                try:
                    await self._soft_limit_alert(ticket, ref)
                except Exception:  # the charge is done; an alert must not fail the request
                    log.exception("soft_limit_alert_failed", request_id=ticket.request_id)

    async def _soft_limit_alert(self, ticket: Ticket, ref: BudgetRef) -> None:
        for budget, config in ticket.budgets:
            if (budget.scope, budget.owner_id) == (ref.scope, ref.owner_id):
                state = await self.reservations.read_state(budget)
                await sync_to_async(budget_soft_limit_alert, thread_sensitive=False)(
                    budget_id=config.budget_id,
                    period_key=ref.period_key,
                    spent_usd=state.spent_usd or Decimal(0),
                )

    def _event(self, ctx: RequestContext, ticket: Ticket, cost: Decimal | None) -> UsageEvent:
        caller = ctx.caller
        assert caller is not None
        usage = ctx.final_usage()
        return UsageEvent(
            event_id=ticket.request_id,
            tenant_id=caller.tenant_id,
            api_key_id=caller.key_id,
            secret_id=caller.secret_id,
            requested_model=ctx.requested_model or "",
            served_model=_model_of(ctx),
            route_reason=ctx.route_reason,
            endpoint=ctx.endpoint,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            cost_usd=cost,
            upstream_cost_usd=pricing.upstream_cost(ctx.upstream_cost),
            latency_ms=round(ctx.elapsed_ms()),
            ttfb_ms=None if ctx.ttfb_ms is None else round(ctx.ttfb_ms),
            status_code=ctx.status,
            is_cache_hit=ctx.is_cache_hit,
            is_streamed=ctx.is_streamed,
            correlation_id=ctx.correlation_id,
            started_at=ticket.started_at,
            finished_at=datetime.now(UTC),
        )


def _model_of(ctx: RequestContext) -> str:
    """The model served (as routed, or the fallback that answered), else the one asked for."""
    return ctx.served_model or ctx.requested_model or ""


def _tokens_needed(body: bytes, max_output_tokens: int) -> int:
    """What the tokens-per-minute limits count at admission."""
    return tokens.estimated_prompt_tokens(body) + max_output_tokens


def _max_cost(price: ModelPrice, body: bytes, max_output_tokens: int) -> Decimal:
    """The worst case a budget reserves: body bytes bound the prompt tokens."""
    return pricing.max_cost_usd(
        price, prompt_tokens=tokens.max_prompt_tokens(body), max_output_tokens=max_output_tokens
    )


def _max_output_tokens(payload: dict[str, Any], endpoint: str) -> int:
    if endpoint == "/v1/embeddings":
        return 0
    requested = payload.get("max_completion_tokens") or payload.get("max_tokens")
    per_choice = (
        requested if isinstance(requested, int) else settings.AICC_DEFAULT_MAX_OUTPUT_TOKENS
    )
    choices = payload.get("n") if isinstance(payload.get("n"), int) else 1
    return per_choice * choices


def _describe(ref: BudgetRef) -> str:
    owner = "tenant" if ref.scope == Scope.TENANT else "API key"
    return f"{owner}'s {ref.period} budget ({ref.period_key})"


def _limit_of(ticket: Ticket, ref: BudgetRef) -> Decimal:
    for budget, _config in ticket.budgets:
        if (budget.scope, budget.owner_id) == (ref.scope, ref.owner_id):
            return budget.limit_usd
    return Decimal(0)


def _unavailable(what: str) -> GatewayError:
    return GatewayError(
        503,
        f"The gateway cannot check {what} right now; the request was not forwarded.",
        code="metering_unavailable",
        headers=[("retry-after", "1")],
    )
