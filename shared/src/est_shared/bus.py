"""JetStream plumbing: broker, streams, publishing with ``Nats-Msg-Id``, durable consumers, and the
object store that holds the organisation's snapshots.

Every consumer ends every message explicitly: ack on success, nack with a delay on a transient
error, dead-letter (publish to ``est.dlq.<service>.<subject>`` then terminate) on a poison event
or when the delivery count reaches its cap. Each outcome is counted in a metric.

An organisation snapshot can be larger than a NATS message may be (1 MiB by default; about 4,000
people make one): the intake writes each version to the ``EST_ORG_SNAPSHOTS`` object store, which
chunks it, and ``est.org.changed`` names the object with its SHA-256 digest (``load_org_snapshot``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import random
import re
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from faststream import AckPolicy, BaseMiddleware
from faststream.nats import ConsumerConfig, DeliverPolicy, JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, PubAck, StorageType, StreamConfig
from nats.js.object_store import ObjectStore
from pydantic import ValidationError

from est_shared.adapters.nats import max_payload
from est_shared.events import EVENT_TYPES, CloudEvent, EventData, OrgChanged, envelope_of
from est_shared.observability import BusMetrics, correlation_id, error_name
from est_shared.org import OrgSnapshot
from est_shared.subjects import ORG, ORG_CHANGED, STREAMS, StreamDef, dead_letter, stream_for

log = logging.getLogger("est.bus")

CLOUDEVENTS_JSON = "application/cloudevents+json"


class BusUnavailable(Exception):
    """JetStream did not acknowledge a publish (not connected, timeout, no stream)."""


class PoisonEvent(Exception):
    """An event that can never be processed; it goes to the dead-letter subject."""


def make_broker(settings_nats_servers: Sequence[str], *, registry: Any = None, service: str = "est",
                metrics: BusMetrics | None = None) -> NatsBroker:
    """A FastStream NATS broker that reconnects forever; its logs go through our JSON logging at WARNING
    (per-message logs are DEBUG, which costs throughput and says nothing an operator needs). With
    ``metrics``, an event whose payload its subscriber's model refuses is dead-lettered (``PoisonGuard``)."""
    framework_log = logging.getLogger("est.faststream")
    if framework_log.level == logging.NOTSET:
        framework_log.setLevel(logging.WARNING)
    middlewares: list[Any] = []
    if registry is not None:  # FastStream's own technical metrics (received, processed, published, sizes)
        from faststream.nats.prometheus import NatsPrometheusMiddleware

        middlewares.append(NatsPrometheusMiddleware(registry=registry, app_name=service))
    holder: list[NatsBroker] = []
    if metrics is not None:
        middlewares.append(poison_guard(service=service, metrics=metrics,
                                        js=lambda: holder[0].config.connection_state.stream))
    broker = NatsBroker(list(settings_nats_servers), logger=framework_log, log_level=logging.DEBUG,
                        max_reconnect_attempts=-1, connect_timeout=2, middlewares=middlewares,
                        # FastStream types it int; nats-py waits this many seconds, a float, between attempts
                        reconnect_time_wait=0.5)  # type: ignore[arg-type]
    holder.append(broker)
    return broker


def poison_guard(*, service: str, metrics: BusMetrics, js: Callable[[], JetStreamContext]) -> type[BaseMiddleware]:
    """A broker middleware: a message whose body its typed subscriber cannot read as its event (not JSON, not
    a CloudEvent, data of another shape) never reaches the handler and is dead-lettered as poison at once.

    FastStream validates a typed handler's arguments inside the middleware chain. Without this, such a
    message would stay unacknowledged and come back until ``max_deliver``, then vanish. Every typed handler
    settles its message itself (``process_message``), so nothing else escapes to here.
    """

    class PoisonGuard(BaseMiddleware):
        async def consume_scope(self, call_next: Callable[[Any], Awaitable[Any]], msg: Any) -> Any:
            try:
                return await call_next(msg)
            except Exception as exc:
                await _dead_letter(js(), msg, service=service, reason="poison", error=f"unreadable: {error_name(exc)}",
                                   metrics=metrics)
                metrics.events.labels("unknown", "dead_lettered").inc()
                return None

    return PoisonGuard


ORG_SNAPSHOTS = "EST_ORG_SNAPSHOTS"
"""The object store bucket of the organisation's snapshots (one object per version, see ``org_object_name``)."""

OBJECT_STORES: tuple[str, ...] = (ORG_SNAPSHOTS,)


async def ensure_streams(js: JetStreamContext, streams: Sequence[StreamDef] = STREAMS, *,
                         replicas: int = 1, object_stores: Sequence[str] = OBJECT_STORES) -> None:
    """Create or update the streams and the object store buckets (idempotent)."""
    configs = [StreamConfig(name=s.name, subjects=list(s.subjects), storage=StorageType.FILE,
                            num_replicas=replicas, max_age=s.max_age_seconds or None,
                            duplicate_window=s.duplicate_window_seconds) for s in streams]
    # a bucket is a stream as nats-py's create_object_store makes it (so its ObjectStore reads it)
    configs += [StreamConfig(name=f"OBJ_{bucket}", subjects=[f"$O.{bucket}.C.>", f"$O.{bucket}.M.>"],
                             storage=StorageType.FILE, num_replicas=replicas, discard=DiscardPolicy.NEW,
                             allow_rollup_hdrs=True, allow_direct=True, max_consumers=-1)
                for bucket in object_stores]
    for cfg in configs:
        try:
            await js.add_stream(cfg)
        except nats.js.errors.BadRequestError:
            await js.update_stream(cfg)


def object_store(js: JetStreamContext, bucket: str) -> ObjectStore:
    """A bucket made by ``ensure_streams`` (no round trip: ``js.object_store`` asks for the stream's info)."""
    return ObjectStore(name=bucket, stream=f"OBJ_{bucket}", js=js)


async def put_object(js: JetStreamContext, bucket: str, name: str, data: bytes) -> None:
    """Store ``data`` as object ``name`` (chunked: any size); an object already there with the same digest is
    kept as it is. Raises ``BusUnavailable`` when JetStream does not take it."""
    store = object_store(js, bucket)
    digest = "SHA-256=" + _b64(hashlib.sha256(data).digest())
    try:
        try:
            info = await store.get_info(name)
            if info.digest == digest and info.size == len(data):
                return
        except nats.js.errors.ObjectNotFoundError:
            pass
        await store.put(name, data)
    except (TimeoutError, nats.errors.Error, nats.js.errors.Error, OSError) as exc:
        raise BusUnavailable(f"object {name} not stored: {exc.__class__.__name__}") from exc


async def get_object(js: JetStreamContext, bucket: str, name: str) -> bytes | None:
    """The content of an object, or None if there is no such object (yet). Raises ``BusUnavailable``."""
    try:
        result = await object_store(js, bucket).get(name)
    except (nats.js.errors.ObjectNotFoundError, nats.js.errors.NotFoundError):
        return None
    except (TimeoutError, nats.errors.Error, nats.js.errors.Error, OSError) as exc:
        raise BusUnavailable(f"object {name} not read: {exc.__class__.__name__}") from exc
    return bytes(result.data or b"")


async def object_names(js: JetStreamContext, bucket: str) -> list[str]:
    """The names of the objects in a bucket (deleted ones left out)."""
    try:
        return [info.name for info in await object_store(js, bucket).list(ignore_deletes=True) if info.name]
    except nats.js.errors.NotFoundError:  # an empty bucket
        return []


async def delete_object(js: JetStreamContext, bucket: str, name: str) -> None:
    """Delete an object (its chunks are purged); one already gone is fine."""
    try:
        await object_store(js, bucket).delete(name)
    except nats.js.errors.ObjectNotFoundError:
        pass


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def encode(event: CloudEvent[Any]) -> bytes:
    """The wire form of an event: CloudEvents JSON."""
    return event.model_dump_json(exclude_none=True).encode()


@dataclass(frozen=True, slots=True)
class Published:
    """What became of one publish: acknowledged, or not with the error's class, ``permanent`` when sending
    the same message again can never succeed (too large, a subject no stream takes or no subject at all,
    refused by the stream as a bad request) rather than later (NATS away, no ack in time)."""

    ok: bool
    error: str | None = None
    permanent: bool = False


ACKED = Published(True)
_NOT_SENT = Published(False, "NotSent")
_SUBJECT = re.compile(r"[^\s.*>]+(?:\.[^\s.*>]+)*")


def permanent_error(exc: BaseException) -> bool:
    """Whether a publish error is one that no retry of the same message can get past."""
    return isinstance(exc, nats.errors.MaxPayloadError | nats.errors.BadSubjectError
                      | nats.js.errors.BadRequestError | NoStreamForSubject)


class NoStreamForSubject(Exception):
    """No stream of ours captures the subject, or it is no valid subject to publish on."""


def _checked(js: JetStreamContext, subject: str, payload: bytes) -> str:
    """The stream that takes a publish; raises the permanent error the publish would end in."""
    if not _SUBJECT.fullmatch(subject) or any(c < " " or c == "\x7f" for c in subject):
        raise NoStreamForSubject("not a valid subject to publish on")
    try:
        stream = stream_for(subject)
    except KeyError:
        raise NoStreamForSubject("no stream captures the subject") from None
    limit = max_payload(js)
    if limit and len(payload) > limit:
        raise nats.errors.MaxPayloadError()
    return stream


async def publish_pipelined(js: JetStreamContext, items: list[tuple[str, bytes, str]], *,
                            timeout: float = 5.0) -> list[Published]:
    """Publish (subject, payload, msg id) items on one connection without waiting between them.

    Returns what became of each item. An item refused for good (``Published.permanent``) does not
    stop the items after it; a transient failure (closed connection, a stall) leaves it and every
    later one not sent. The caller treats an item without an ack as not sent (a resend of one that
    was stored is answered as a duplicate, by its msg id). One connection keeps the order in the stream.
    """
    results: list[Published | asyncio.Future[Any]] = []
    for subject, payload, msg_id in items:
        try:
            stream = _checked(js, subject, payload)
            results.append(await js.publish_async(subject, payload, stream=stream, wait_stall=timeout,
                                                  headers={"Nats-Msg-Id": msg_id, "Content-Type": CLOUDEVENTS_JSON}))
        except Exception as exc:
            if permanent_error(exc):
                results.append(Published(False, error_name(exc), permanent=True))
                continue
            # closed, stalled: the ones sent so far may still be acknowledged
            log.warning("pipelined publish stopped", extra={"error": exc.__class__.__name__})
            results.extend([_NOT_SENT] * (len(items) - len(results)))
            break
    futures = [f for f in results if isinstance(f, asyncio.Future)]
    if futures:
        _done, pending = await asyncio.wait(futures, timeout=timeout)
        for f in pending:
            f.cancel()
    return [r if isinstance(r, Published) else _settled(r) for r in results]


def _settled(future: asyncio.Future[Any]) -> Published:
    if future.cancelled():
        return Published(False, "TimeoutError")
    exc = future.exception()
    if exc is None:
        return ACKED
    return Published(False, error_name(exc), permanent=permanent_error(exc))


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
                 data: type[EventData], handle: Handler, metrics: BusMetrics, types: Collection[str] = (),
                 max_deliver: int = 8, batch_size: int = 32, deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
                 ack_wait: float = 30.0, description: str | None = None) -> None:
    """Register a durable pull consumer of events whose data is ``data`` (of the event ``types``, if given).

    The subscriber is typed (``CloudEvent[data]``), so FastStream validates each message and documents the
    channel with its real schema in AsyncAPI. Each message is settled by ``process_message``: ack, nack
    with backoff, or dead-letter; one its model refuses is dead-lettered by ``PoisonGuard``.
    """
    metrics.track_consumer(stream.name, durable)
    expected = frozenset(types)

    async def on_event(event: CloudEvent[Any], msg: NatsMessage) -> None:
        await process_message(msg, service=service, handle=handle, metrics=metrics, max_deliver=max_deliver,
                              js=broker.config.connection_state.stream, event=event, expected=expected)

    on_event.__annotations__ = {"event": envelope_of(data), "msg": NatsMessage, "return": None}
    broker.subscriber(
        subject, stream=JStream(stream.name, declare=False), durable=durable,
        pull_sub=PullSub(batch_size=batch_size, timeout=1.0),
        config=ConsumerConfig(max_deliver=max_deliver, ack_wait=ack_wait, deliver_policy=deliver_policy),
        ack_policy=AckPolicy.MANUAL, title=f"{service}:{durable}",
        description=description or f"{', '.join(sorted(expected)) or data.__name__} ({stream.name}, durable "
                                   f"{durable})",
    )(on_event)


async def process_message(msg: Any, *, service: str, handle: Handler, metrics: BusMetrics, max_deliver: int,
                          js: JetStreamContext, event: CloudEvent[Any] | None = None,
                          expected: Collection[str] = ()) -> None:
    """Decode (unless a typed subscriber did), handle and settle one message: ack, nack with delay, or
    dead-letter. An event of a type not ``expected`` is poison."""
    raw = msg.raw_message
    delivered = raw.metadata.num_delivered if raw.metadata else 1
    etype = "unknown"
    token = None
    try:
        if event is None:
            event = parse_event(msg.body)
        etype = event.type
        if expected and etype not in expected:
            raise PoisonEvent(f"unexpected event type {etype!r}")
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


# --- the organisation on the bus -----------------------------------------------------------

class SnapshotMissing(Exception):
    """The snapshot an ``est.org.changed`` names is not (yet) in the object store, or not as announced."""


async def load_org_snapshot(js: JetStreamContext, data: OrgChanged) -> OrgSnapshot:
    """The snapshot an ``est.org.changed`` announces: inline (events written before the object store), or the
    object it names, checked against its digest and version. Raises ``SnapshotMissing`` (try again later),
    ``BusUnavailable``, or ``PoisonEvent`` for an event that names no snapshot at all."""
    if data.snapshot is not None:
        return OrgSnapshot.model_validate(data.snapshot)
    if not data.snapshot_object or not data.snapshot_sha256:
        raise PoisonEvent(f"organisation version {data.version} names no snapshot")
    blob = await get_object(js, ORG_SNAPSHOTS, data.snapshot_object)
    if blob is None:
        raise SnapshotMissing(f"organisation snapshot {data.snapshot_object} not in {ORG_SNAPSHOTS}")
    if hashlib.sha256(blob).hexdigest() != data.snapshot_sha256:
        raise SnapshotMissing(f"organisation snapshot {data.snapshot_object} does not match its digest")
    # parsing tens of megabytes of JSON takes a while: in a thread, so the loop goes on serving meanwhile
    snapshot = await asyncio.to_thread(OrgSnapshot.model_validate_json, blob)
    if snapshot.version != data.version:
        raise SnapshotMissing(f"organisation snapshot {data.snapshot_object} holds version {snapshot.version}")
    return snapshot


async def latest_org_change(js: JetStreamContext) -> OrgChanged | None:
    """The newest ``est.org.changed`` on the ORG stream, or None; raises ``PoisonEvent`` if it is unreadable."""
    raw = await latest_on_subject(js, ORG.name, ORG_CHANGED)
    if not raw:
        return None
    data = parse_event(raw).data
    if not isinstance(data, OrgChanged):
        raise PoisonEvent(f"not an organisation event on {ORG_CHANGED}")
    return data


async def latest_org_snapshot(js: JetStreamContext) -> OrgSnapshot | None:
    """The organisation as the ORG stream's newest event announces it (None before the first)."""
    data = await latest_org_change(js)
    return await load_org_snapshot(js, data) if data is not None else None
