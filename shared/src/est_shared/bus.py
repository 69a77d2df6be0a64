"""JetStream plumbing: broker, streams, publishing with ``Nats-Msg-Id``, and durable consumers.

Every consumer ends every message explicitly: ack on success, nack with a delay on a transient
error, dead-letter (publish to ``est.dlq.<service>.<subject>`` then terminate) on a poison event
or when the delivery count reaches its cap. Each outcome is counted in a metric.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import nats.errors
import nats.js.errors
from faststream import AckPolicy
from faststream.nats import ConsumerConfig, DeliverPolicy, JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from nats.js import JetStreamContext
from nats.js.api import PubAck, StorageType, StreamConfig
from pydantic import ValidationError

from est_shared.events import EVENT_TYPES, CloudEvent, EventData
from est_shared.observability import BusMetrics, correlation_id, error_name
from est_shared.subjects import STREAMS, StreamDef, dead_letter, stream_for

log = logging.getLogger("est.bus")

CLOUDEVENTS_JSON = "application/cloudevents+json"


class BusUnavailable(Exception):
    """JetStream did not acknowledge a publish (not connected, timeout, no stream)."""


class PoisonEvent(Exception):
    """An event that can never be processed; it goes to the dead-letter subject."""


def make_broker(settings_nats_servers: Sequence[str], *, registry: Any = None, service: str = "est") -> NatsBroker:
    """A FastStream NATS broker that reconnects forever; its logs go through our JSON logging at WARNING
    (per-message logs are DEBUG, which costs throughput and says nothing an operator needs)."""
    framework_log = logging.getLogger("est.faststream")
    if framework_log.level == logging.NOTSET:
        framework_log.setLevel(logging.WARNING)
    middlewares = []
    if registry is not None:  # FastStream's own technical metrics (received, processed, published, sizes)
        from faststream.nats.prometheus import NatsPrometheusMiddleware

        middlewares.append(NatsPrometheusMiddleware(registry=registry, app_name=service))
    return NatsBroker(list(settings_nats_servers), logger=framework_log, log_level=logging.DEBUG,
                      max_reconnect_attempts=-1, reconnect_time_wait=0.5, connect_timeout=2,
                      middlewares=middlewares)


async def ensure_streams(js: JetStreamContext, streams: Sequence[StreamDef] = STREAMS, *,
                         replicas: int = 1) -> None:
    """Create or update the streams (idempotent)."""
    for s in streams:
        cfg = StreamConfig(name=s.name, subjects=list(s.subjects), storage=StorageType.FILE,
                           num_replicas=replicas, max_age=s.max_age_seconds or None,
                           duplicate_window=s.duplicate_window_seconds)
        try:
            await js.add_stream(cfg)
        except nats.js.errors.BadRequestError:
            await js.update_stream(cfg)


def encode(event: CloudEvent[Any]) -> bytes:
    """The wire form of an event: CloudEvents JSON."""
    return event.model_dump_json(exclude_none=True).encode()


async def publish_pipelined(js: JetStreamContext, items: list[tuple[str, bytes, str]], *,
                            timeout: float = 5.0) -> int:
    """Publish (subject, payload, msg id) items on one connection without waiting between them.

    Returns how many items, counted from the first, JetStream acknowledged: the caller treats the
    rest as not sent (a resend of one that was stored is answered as a duplicate, by its msg id).
    One connection keeps the order of the items in the stream.
    """
    futures = []
    try:
        for subject, payload, msg_id in items:
            futures.append(await js.publish_async(subject, payload, stream=stream_for(subject), wait_stall=timeout,
                                                  headers={"Nats-Msg-Id": msg_id, "Content-Type": CLOUDEVENTS_JSON}))
    except Exception as exc:  # closed, stalled: the ones sent so far may still be acknowledged
        log.warning("pipelined publish stopped", extra={"error": exc.__class__.__name__})
    if not futures:
        return 0
    done, pending = await asyncio.wait(futures, timeout=timeout)
    for f in pending:
        f.cancel()
    acked = 0
    for f in futures:
        if f not in done or f.cancelled() or f.exception() is not None:
            break
        acked += 1
    return acked


async def publish_raw(js: JetStreamContext, subject: str, payload: bytes, *, msg_id: str,
                      timeout: float = 5.0) -> PubAck:
    """Publish bytes to the stream that holds the subject and wait for the ack."""
    try:
        return await js.publish(subject, payload, timeout=timeout, stream=stream_for(subject),
                                headers={"Nats-Msg-Id": msg_id, "Content-Type": CLOUDEVENTS_JSON})
    except (TimeoutError, nats.errors.Error, nats.js.errors.Error, OSError) as exc:
        raise BusUnavailable(f"no JetStream ack for {subject}: {exc.__class__.__name__}") from exc


async def publish_event(js: JetStreamContext, subject: str, event: CloudEvent[Any], *,
                        timeout: float = 5.0) -> PubAck:
    """Publish a CloudEvent with its id as ``Nats-Msg-Id`` and wait for the ack."""
    return await publish_raw(js, subject, encode(event), msg_id=event.id, timeout=timeout)


def parse_event(raw: bytes) -> CloudEvent[EventData]:
    """Decode a CloudEvent and validate its data by type; raises PoisonEvent if impossible."""
    try:
        envelope = CloudEvent[dict[str, Any]].model_validate_json(raw)  # type: ignore[type-var]
        model = EVENT_TYPES.get(envelope.type)
        if model is None:
            raise PoisonEvent(f"unknown event type {envelope.type!r}")
        return CloudEvent[model].model_validate_json(raw)  # type: ignore[valid-type]
    except ValidationError as exc:
        raise PoisonEvent(f"invalid event: {exc.error_count()} errors") from exc


Handler = Callable[[CloudEvent[Any]], Awaitable[None]]


def retry_delay(delivered: int) -> float:
    """Backoff for a nack: exponential with jitter, capped at 30 s."""
    return min(30.0, 0.5 * 2 ** max(0, delivered - 1)) * random.uniform(0.8, 1.2)


def add_consumer(broker: NatsBroker, *, service: str, stream: StreamDef, subject: str, durable: str,
                 handle: Handler, metrics: BusMetrics, max_deliver: int = 8, batch_size: int = 32,
                 deliver_policy: DeliverPolicy = DeliverPolicy.ALL, ack_wait: float = 30.0) -> None:
    """Register a durable pull consumer whose handler gets validated CloudEvents."""
    metrics.track_consumer(stream.name, durable)

    @broker.subscriber(
        subject, stream=JStream(stream.name, declare=False), durable=durable,
        pull_sub=PullSub(batch_size=batch_size, timeout=1.0),
        config=ConsumerConfig(max_deliver=max_deliver, ack_wait=ack_wait, deliver_policy=deliver_policy),
        ack_policy=AckPolicy.MANUAL, title=f"{service}:{durable}",
    )
    async def _on_message(msg: NatsMessage) -> None:
        await process_message(msg, service=service, handle=handle, metrics=metrics, max_deliver=max_deliver,
                              js=broker.config.connection_state.stream)


async def process_message(msg: Any, *, service: str, handle: Handler, metrics: BusMetrics, max_deliver: int,
                          js: JetStreamContext) -> None:
    """Decode, handle and settle one message: ack, nack with delay, or dead-letter."""
    raw = msg.raw_message
    delivered = raw.metadata.num_delivered if raw.metadata else 1
    etype = "unknown"
    token = None
    try:
        event = parse_event(msg.body)
        etype = event.type
        token = correlation_id.set(event.correlationid or event.id)
        with metrics.handle_seconds.time():
            await handle(event)
    except PoisonEvent as exc:
        await _dead_letter(js, msg, service=service, reason="poison", error=str(exc), metrics=metrics)
        metrics.events.labels(etype, "dead_lettered").inc()
        return
    except Exception as exc:  # transient until proven otherwise: retry with backoff, then give up loudly
        # only the error's class goes to logs and headers: messages can quote event data (free text)
        error = error_name(exc)
        if delivered >= max_deliver:
            log.error("event failed %s times, dead-lettering", delivered,
                      extra={"subject": raw.subject, "error": error})
            await _dead_letter(js, msg, service=service, reason="max_deliver", error=error, metrics=metrics)
            metrics.events.labels(etype, "dead_lettered").inc()
            return
        log.warning("event failed, will retry", extra={"subject": raw.subject, "delivered": delivered,
                                                        "error": error})
        metrics.events.labels(etype, "retried").inc()
        await msg.nack(delay=retry_delay(delivered))
        return
    finally:
        if token is not None:
            correlation_id.reset(token)
    metrics.events.labels(etype, "ok").inc()
    await msg.ack()


async def _dead_letter(js: JetStreamContext, msg: Any, *, service: str, reason: str, error: str,
                       metrics: BusMetrics) -> None:
    raw = msg.raw_message
    seq = raw.metadata.sequence.stream if raw.metadata else 0
    try:
        await js.publish(dead_letter(service, raw.subject), msg.body, timeout=5.0,
                         headers={"Nats-Msg-Id": f"{service}:{raw.subject}:{seq}", "EST-DLQ-Reason": reason,
                                  "EST-DLQ-Error": error[:500], "EST-Original-Subject": raw.subject})
    except Exception:  # the DLQ is unreachable: keep the message for a later redelivery instead
        log.exception("dead-letter publish failed; leaving message for redelivery")
        await msg.nack(delay=5.0)
        return
    metrics.dead_lettered.labels(reason).inc()
    log.error("event dead-lettered", extra={"subject": raw.subject, "reason": reason, "error": error[:300]})
    await msg.reject()


async def latest_on_subject(js: JetStreamContext, stream: str, subject: str) -> bytes | None:
    """The newest message on a subject, or None."""
    try:
        m = await js.get_last_msg(stream, subject)
    except nats.js.errors.NotFoundError:
        return None
    return m.data
