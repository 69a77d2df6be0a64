"""The delivery worker: claims due deliveries (safe across replicas), attempts them through the senders, records
the ledger and retries."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from est_shared.clock import utcnow
from est_shared.db import transaction
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from est_notifier.deliveries import db
from est_notifier.deliveries.domain import AttemptResult, after_attempt, next_delay
from est_notifier.deliveries.handlers import cancel_pending
from est_notifier.deliveries.personal import NotOpened, PersonalDeliveries, is_personal
from est_notifier.metrics import NotifierMetrics
from est_notifier.subscriptions.domain import END_REASONS
from est_notifier.tables import Sessions, Tables, aware

log = logging.getLogger("est.notifier")


class Sender(Protocol):
    """The port of a channel: one attempt at one delivery (the implementations are in ``est_notifier.adapters``)."""

    async def send(self, delivery: dict[str, Any], attempt: int) -> AttemptResult: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff base, cap and the attempt limit."""

    base: float
    cap: float
    max_attempts: int


class DeliveryWorker:
    """Claims due deliveries (safe across replicas), attempts them, records the ledger, retries."""

    def __init__(self, *, sessions: Sessions, tables: Tables, senders: dict[str, Sender], policy: RetryPolicy,
                 metrics: NotifierMetrics, poll_interval: float = 1.0, lease: float = 120.0, batch: int = 20,
                 pause_after_dead: int = 3, worker_id: str | None = None,
                 digests: Callable[[float], Awaitable[int]] | None = None,
                 personal: PersonalDeliveries | None = None,
                 on_paused: Callable[[AsyncSession, str, int], Awaitable[None]] | None = None) -> None:
        self.sessions, self.tables, self.senders, self.policy = sessions, tables, senders, policy
        self.on_paused = on_paused
        self.metrics, self.poll_interval, self.lease, self.batch = metrics, poll_interval, lease, batch
        self.pause_after_dead = pause_after_dead
        self.worker_id = worker_id or f"w-{uuid.uuid4().hex[:12]}"
        self.digests = digests
        self.personal = personal
        self._wake = asyncio.Event()
        self._rng = random.Random()
        self._metrics_at = 0.0

    def wake(self) -> None:
        """New deliveries exist: run now instead of at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """The loop: work while there is work, else sleep until woken, the next due time or the poll."""
        while True:
            claimed = 0
            try:
                claimed = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery worker round failed")
                try:
                    await self.refresh_metrics()
                except Exception:
                    log.warning("could not refresh the backlog metrics")
            if claimed:
                continue
            wait = self.poll_interval
            try:
                nxt = await self._next_due()
                if nxt is not None:
                    wait = max(0.0, min(wait, nxt - time.time()))
            except Exception:
                log.exception("could not read the next due delivery")
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _next_due(self) -> float | None:
        c = self.tables.deliveries.c
        async with self.sessions() as s:
            value = await s.scalar(select(func.min(c.next_attempt_at)).where(c.status == "pending"))
        return float(value) if value is not None else None

    async def run_once(self) -> int:
        """One round: flush due digests, claim due deliveries, attempt them concurrently, record the ledger."""
        now = time.time()
        if self.digests is not None:
            await self.digests(now)
        token = f"{self.worker_id}/{uuid.uuid4().hex[:12]}"
        claimed = await self._claim(now, token)
        if claimed:
            live = [d for d in claimed if not d["ended_reason"]]
            for d in claimed:
                if d["ended_reason"]:  # its subscription ended after the delivery was made: cancel, do not send
                    async with transaction(self.sessions) as s:
                        await cancel_pending(s, self.tables, subscription_id=d["subscription_id"],
                                             delivery_ids=[d["id"]],
                                             reason=f"cancelled: {END_REASONS.get(d['ended_reason'], ('',))[0]}")
            results = await asyncio.gather(*(self._send(d) for d in live))
            await self._record(list(zip(live, results, strict=True)), token)
        await self.refresh_metrics(at_most_every=1.0 if claimed else 0.0)
        return len(claimed)

    async def refresh_metrics(self, at_most_every: float = 0.0) -> None:
        """Backlog per channel and the oldest undelivered delivery, read from the database (right after restarts);
        while deliveries stream through, at most once a second (a full scan per round costs throughput)."""
        now = time.monotonic()
        if at_most_every and now - self._metrics_at < at_most_every:
            return
        self._metrics_at = now
        async with self.sessions() as s:
            counts, oldest = await db.backlog(s, self.tables)
        self.metrics.set_backlog(counts, oldest)

    async def _claim(self, now: float, token: str) -> list[dict[str, Any]]:
        """Take up to ``batch`` due deliveries in one UPDATE; only rows this UPDATE changed are ours."""
        t = self.tables
        c, sc = t.deliveries.c, t.subscriptions.c
        async with transaction(self.sessions) as s:
            ids = await db.due_delivery_ids(s, t, now=now, limit=self.batch)
            if not ids:
                return []
            await s.execute(update(t.deliveries).where(c.id.in_(ids), or_(
                (c.status == "pending") & (c.next_attempt_at <= now),
                (c.status == "delivering") & (c.claimed_until < now),
            )).values(status="delivering", claimed_until=now + self.lease, claimed_by=token))
            rows = (await s.execute(
                select(t.deliveries, sc.ended_reason).select_from(
                    t.deliveries.outerjoin(t.subscriptions, (sc.id == c.subscription_id) & sc.ended_at.is_not(None)))
                .where(c.id.in_(ids), c.claimed_by == token))).mappings().all()
        return [dict(r) for r in rows]

    async def _send(self, d: dict[str, Any]) -> tuple[AttemptResult, int, dict[str, Any] | None]:
        """One attempt; a notification with personal data is opened and rendered just before (``personal``)
        and the read it was comes back with the result, for the ledger."""
        sender = self.senders[d["channel"]]
        started = time.monotonic()
        read: dict[str, Any] | None = None
        if is_personal(d):
            if self.personal is None:
                return AttemptResult("failed", error="personal data cannot be delivered here"), 0, None
            try:
                prepared = await self.personal.prepare(d)
            except NotOpened as exc:
                log.warning("notification with personal data not opened", extra={
                    "delivery_id": d["id"], "subscription_id": d["subscription_id"], "error": exc.error})
                return AttemptResult(exc.outcome, error=exc.error), 0, None  # type: ignore[arg-type]
            d, read = prepared.delivery, prepared.read
        try:
            result = await sender.send(d, int(d["attempts"]) + 1)
        except Exception as exc:  # a sender bug must not lose the delivery: count it as transient
            if read is None:
                log.exception("sender raised", extra={"delivery_id": d["id"]})
            else:  # no traceback: its frames hold the opened personal data
                log.error("sender raised", extra={"delivery_id": d["id"], "error": exc.__class__.__name__})
            result = AttemptResult("retry", error=f"{exc.__class__.__name__}: {str(exc)[:200]}"
                                   if read is None else exc.__class__.__name__)
        return result, int((time.monotonic() - started) * 1000), read

    async def _record(self, done: list[tuple[dict[str, Any], tuple[AttemptResult, int, dict[str, Any] | None]]],
                      token: str) -> None:
        """The ledger rows and new states of a round, in one transaction (one by one if that fails)."""
        if not done:
            return
        try:
            async with transaction(self.sessions) as s:
                outcomes = [await self._record_one(s, d, result, ms, token, read) for d, (result, ms, read) in done]
                await self._reset_dead_counts(s, [d["subscription_id"] for (d, _), o in zip(done, outcomes, strict=True)
                                                  if o and o[0] == "delivered"])
        except IntegrityError:
            outcomes = []
            for d, (result, ms, read) in done:
                try:
                    async with transaction(self.sessions) as s:
                        outcomes.append(await self._record_one(s, d, result, ms, token, read))
                        if outcomes[-1] and outcomes[-1][0] == "delivered":
                            await self._reset_dead_counts(s, [d["subscription_id"]])
                except IntegrityError:
                    outcomes.append(None)
        for (d, (result, _ms, read)), outcome in zip(done, outcomes, strict=True):
            if outcome is not None:
                self._count(d, result, *outcome)
                if read is not None:
                    self.metrics.personal.labels(outcome[0] if outcome[0] != "pending" else "retry").inc()
                    log.info("personal data opened for social services", extra={
                        "protocol_id": read["protocol_id"], "delivery_id": read["delivery_id"],
                        "subscription_id": read["subscription_id"], "owner_id": read["owner_id"],
                        "outcome": outcome[0]})

    async def _record_one(self, s: AsyncSession, d: dict[str, Any], result: AttemptResult, duration_ms: int,
                          token: str, read: dict[str, Any] | None = None) -> tuple[str, int, float] | None:
        did, attempt = d["id"], int(d["attempts"]) + 1
        status = after_attempt(result.outcome, attempt, self.policy.max_attempts)
        now = time.time()
        delay = next_delay(attempt, base=self.policy.base, cap=self.policy.cap, retry_after=result.retry_after,
                           rng=self._rng) if status == "pending" else 0.0
        t = self.tables
        values: dict[str, Any] = {"status": status, "attempts": attempt, "claimed_until": None, "claimed_by": None,
                                  "last_status_code": result.code, "last_error": result.error,
                                  "next_attempt_at": now + delay}
        if status != "pending":
            values["finished_at"] = utcnow()
            if is_personal(d):
                values["payload"] = b""  # the sealed notification is not kept once the delivery is finished
        res = await s.execute(update(t.deliveries).where(t.deliveries.c.id == did, t.deliveries.c.claimed_by == token)
                              .values(**values))
        if int(getattr(res, "rowcount", 0) or 0) != 1:
            log.warning("delivery lease lost; another replica owns it now", extra={"delivery_id": did})
            return None
        await s.execute(t.attempts.insert().values(
            delivery_id=did, subscription_id=d["subscription_id"], event_id=d["event_id"],
            event_type=d["event_type"], channel=d["channel"], attempt=attempt, at=utcnow(),
            status={"pending": "retry"}.get(status, status), response_code=result.code, error=result.error,
            duration_ms=duration_ms))
        if read is not None:  # the opening of the sealed personal data, logged with the attempt it served
            await db.add_personal_read(s, t, attempt=attempt, outcome={"pending": "retry"}.get(status, status),
                                       **read)
        if status == "dead":
            await self._subscription_dead(s, d["subscription_id"])
        elif status == "refused":
            await self._subscription_refused(s, d["subscription_id"], result.reason or "url")
        return status, attempt, now

    def _count(self, d: dict[str, Any], result: AttemptResult, status: str, attempt: int, now: float) -> None:
        channel, did = d["channel"], d["id"]
        self.metrics.attempts.labels(channel, {"pending": "retry"}.get(status, status)).inc()
        if status == "delivered":
            self.metrics.deliveries.labels(channel, "delivered").inc()
            log.info("delivered", extra={"delivery_id": did, "event_id": d["event_id"], "channel": channel,
                                         "subscription_id": d["subscription_id"], "attempt": attempt})
            event_time = aware(d["event_time"])
            if event_time is not None:
                self.metrics.latency.labels(channel).observe(max(0.0, now - event_time.timestamp()))
            close_at = d.get("period_close_at")
            if close_at is not None:
                self.metrics.close_to_delivery.labels(channel).observe(max(0.0, now - float(close_at)))
        elif status == "failed":
            self.metrics.deliveries.labels(channel, "failed").inc()
            log.warning("delivery failed without retry", extra={"delivery_id": did, "code": result.code,
                                                                 "error": result.error})
        elif status == "refused":
            self.metrics.deliveries.labels(channel, "refused").inc()
            self.metrics.refused.labels("send", result.reason or "url").inc()
            log.warning("webhook target refused; nothing sent", extra={
                "delivery_id": did, "subscription_id": d["subscription_id"], "reason": result.reason})
        elif status == "dead":
            self.metrics.deliveries.labels(channel, "dead").inc()
            self.metrics.dead.labels(channel).inc()
            log.error("delivery dead-lettered after retry cap", extra={
                "delivery_id": did, "subscription_id": d["subscription_id"], "event_id": d["event_id"],
                "attempts": attempt, "code": result.code, "error": result.error})

    async def _reset_dead_counts(self, s: AsyncSession, sub_ids: list[str]) -> None:
        """A success resets the count of dead deliveries in a row."""
        if sub_ids:
            c = self.tables.subscriptions.c
            await s.execute(update(self.tables.subscriptions).where(c.id.in_(set(sub_ids)), c.consecutive_dead != 0)
                            .values(consecutive_dead=0))

    async def _subscription_refused(self, s: AsyncSession, sub_id: str, reason: str) -> None:
        """A refused target stays refused until its owner changes it: the subscription is paused, so that
        further events do not each make a refused delivery (resuming checks the target again)."""
        c = self.tables.subscriptions.c
        await s.execute(update(self.tables.subscriptions).where(c.id == sub_id, c.paused.is_(False))
                        .values(paused=True, paused_reason=f"webhook target refused ({reason}): paused automatically"))

    async def _subscription_dead(self, s: AsyncSession, sub_id: str) -> None:
        """Dead endpoints get paused after several dead deliveries in a row."""
        c = self.tables.subscriptions.c
        await s.execute(update(self.tables.subscriptions).where(c.id == sub_id)
                        .values(consecutive_dead=c.consecutive_dead + 1))
        if self.pause_after_dead > 0:
            dead = await s.scalar(select(c.consecutive_dead).where(c.id == sub_id))
            if (dead or 0) >= self.pause_after_dead:
                res = await s.execute(update(self.tables.subscriptions).where(c.id == sub_id, c.paused.is_(False))
                                      .values(paused=True, paused_reason="endpoint dead: paused automatically"))
                if int(getattr(res, "rowcount", 0) or 0):
                    self.metrics.paused.inc()
                    log.error("subscription paused after dead deliveries", extra={"subscription_id": sub_id})
                    if self.on_paused is not None:  # the owner is told, in the same transaction
                        await self.on_paused(s, sub_id, int(dead or 0))
