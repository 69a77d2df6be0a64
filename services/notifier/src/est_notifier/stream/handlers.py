"""The live stream for dashboards: ``GET /v1/stream`` as server-sent events from JetStream.

Each connection reads the PICTURES, ALERTS and ANALYSES streams through ephemeral ordered consumers
(filtered to the caller's municipalities and areas), renders every event as the caller may see it
(``subscriptions.domain.render_for``) and writes it as one SSE message: ``id:`` the event id, ``event:`` its type,
``data:`` the CloudEvent JSON on one line. A comment line is sent after ``heartbeat`` seconds without
an event so proxies keep the connection open.

Who gets what: every event passes ``subscriptions.receipt.may_receive``, with the person's roles, areas and
municipalities as the organisation has them now (the same rule as webhooks, e-mail and digests), and the
consumers read only the subjects the person may receive at connection time. A person who leaves the
organisation gets ``stream.closed`` and the connection ends.

Resuming: a client that reconnects with ``Last-Event-ID`` (browsers do this by themselves) gets the
events after that one. The id is looked up in an in-memory index of recently streamed events, or
else by scanning the message headers (``Nats-Msg-Id``) of the last ``resume_window`` seconds. Its
own stream resumes at the next sequence; the other two at its time minus ``resume_margin`` (order
across streams is not defined), so a few events around the resume point may come again: clients
de-duplicate by id. An unknown id, or one older than ``max_replay`` seconds, gives a ``stream.reset``
event and then live events.

Caps: ``?since=`` may reach back at most ``max_replay`` seconds (the route refuses an older start), and
one person holds at most ``max_per_person`` open streams on this replica (one more is refused): a replay
is read into memory as fast as the client takes it, so both bound what one caller can make a replica
hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from est_shared.org import Principal
from est_shared.subjects import ALERTS, ANALYSES, PICTURES
from nats.js.api import ConsumerConfig, DeliverPolicy

from est_notifier.subscriptions.domain import Audience, Caller, audience_of, caller_of, render_for
from est_notifier.subscriptions.receipt import may_receive, message_scope

log = logging.getLogger("est.notifier")

STREAMS = (PICTURES.name, ALERTS.name, ANALYSES.name)
OVERFLOW = object()


@dataclass(frozen=True)
class Position:
    """Where an event is: its stream, stream sequence and the time JetStream stored it."""

    stream: str
    seq: int
    at: datetime


def subject_filters(p: Principal, municipality_of: Callable[[str], str | None]) -> dict[str, list[str]]:
    """Per stream, the subjects a caller may receive (``may_receive``; admins: everything)."""
    if "admin" in p.roles:
        return {PICTURES.name: ["est.picture.updated.>", "est.picture.published.>"],
                ALERTS.name: ["est.alert.>"], ANALYSES.name: ["est.analysis.published.>"]}
    who = caller_of(p)
    pairs = sorted({(m, a) for a in p.areas if (m := municipality_of(a))})
    munis = sorted({m for m, _ in pairs} | set(p.municipalities))
    return {
        PICTURES.name: [f"est.picture.{k}.{m}.{a}" for m, a in pairs for k in ("updated", "published")
                        if may_receive(who, f"picture.{k}", m, a)],
        ALERTS.name: [f"est.alert.*.{m}.{a}" for m, a in pairs if may_receive(who, "alert.raised", m, a)],
        ANALYSES.name: [f"est.analysis.published.{m}" for m in munis if may_receive(who, "analysis.published", m)],
    }


def kind_of(event_type: str) -> str:
    return event_type.removeprefix("se.est.")


def sse(event_id: str, event_type: str, data: str) -> bytes:
    """One SSE message (the data is one line of JSON)."""
    return f"id: {event_id}\nevent: {event_type}\ndata: {data}\n\n".encode()


class StreamHub:
    """Opens the per-connection consumers and remembers where recent events are, for resuming."""

    def __init__(self, *, js: Callable[[], Any], heartbeat: float = 15.0, index_size: int = 50_000,
                 resume_window: float = 7 * 86400, resume_margin: float = 30.0, queue_size: int = 10_000,
                 max_replay: float = 86400.0, max_per_person: int = 5,
                 on_event: Callable[[], None] | None = None) -> None:
        self.js, self.heartbeat, self.index_size = js, heartbeat, index_size
        self.resume_window, self.resume_margin, self.queue_size = resume_window, resume_margin, queue_size
        self.max_replay, self.max_per_person = max_replay, max_per_person
        self.on_event = on_event
        self._index: OrderedDict[str, Position] = OrderedDict()
        self._open: dict[str, int] = {}

    def oldest_start(self) -> datetime:
        """The earliest time a stream may start reading at (``?since=`` or a resumed event)."""
        return datetime.now(UTC) - timedelta(seconds=self.max_replay)

    def acquire(self, person_id: str) -> bool:
        """Count one more open stream of a person; False (nothing counted) when they hold the most already."""
        held = self._open.get(person_id, 0)
        if held >= self.max_per_person:
            return False
        self._open[person_id] = held + 1
        return True

    def release(self, person_id: str) -> None:
        """One stream of a person closed."""
        held = self._open.get(person_id, 0) - 1
        if held > 0:
            self._open[person_id] = held
        else:
            self._open.pop(person_id, None)

    def remember(self, event_id: str, pos: Position) -> None:
        self._index[event_id] = pos
        self._index.move_to_end(event_id)
        while len(self._index) > self.index_size:
            self._index.popitem(last=False)

    async def locate(self, event_id: str) -> Position | None:
        """Where an event id is: from the index, else by scanning recent headers of each stream."""
        if event_id in self._index:
            return self._index[event_id]
        since = datetime.now(UTC) - timedelta(seconds=min(self.resume_window, self.max_replay))
        for stream in STREAMS:
            found = await self._scan(stream, event_id, since)
            if found is not None:
                return found
        return None

    async def _scan(self, stream: str, event_id: str, since: datetime) -> Position | None:
        js = self.js()
        try:
            info = await js.stream_info(stream)
        except Exception:
            return None
        if info.state.messages == 0:
            return None
        found: list[Position] = []
        done = asyncio.Event()

        async def cb(msg: Any) -> None:
            md = msg.metadata
            if (msg.headers or {}).get("Nats-Msg-Id") == event_id:
                found.append(Position(stream, md.sequence.stream, md.timestamp))
                done.set()
            if md.num_pending == 0 or md.sequence.stream >= info.state.last_seq:
                done.set()

        cfg = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since,
                             headers_only=True)
        sub = await js.subscribe(">", stream=stream, cb=cb, ordered_consumer=True, config=cfg)
        try:
            with contextlib.suppress(Exception):
                ci = await sub.consumer_info()
                if ci.num_pending == 0 and not ci.delivered.consumer_seq:
                    return None  # nothing stored since ``since`` (common with a short replay window): no wait
            await asyncio.wait_for(done.wait(), timeout=10)
        except TimeoutError:
            log.warning("resume scan timed out", extra={"stream": stream})
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return found[0] if found else None

    async def events(self, p: Principal, *, municipality_of: Callable[[str], str | None],
                     last_event_id: str | None, since: datetime | None,
                     current: Callable[[], Caller | None] | None = None) -> AsyncIterator[bytes]:
        """The SSE byte stream of one connection; ends when the client goes away (cancellation).

        ``current`` gives the person as the organisation has them now (None once they left it): every
        event is checked against it; without it, against ``p`` as it was at connection time.
        """
        who: Audience = audience_of(p)
        at_connect = caller_of(p)
        now_who = current or (lambda: at_connect)
        resume: Position | None = None
        reset: bytes | None = None
        if last_event_id:
            resume = await self.locate(last_event_id)
            if resume is not None and resume.at < self.oldest_start():
                resume = None  # older than the replay cap: as if unknown
            if resume is None:
                reason = {"reason": "unknown or too old Last-Event-ID; continuing with new events",
                          "reason_sv": "okänt eller för gammalt Last-Event-ID; fortsätter med nya händelser",
                          "last_event_id": last_event_id}
                reset = sse(f"reset:{int(time.time() * 1000)}", "stream.reset", json.dumps(reason, ensure_ascii=False))
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.queue_size)
        subs: list[Any] = []
        js = self.js()
        try:
            for stream, filters in subject_filters(p, municipality_of).items():
                if not filters:
                    continue
                cfg = self._start(stream, resume, since)
                cfg.filter_subjects = filters if len(filters) > 1 else None

                async def cb(msg: Any, stream: str = stream) -> None:
                    try:
                        queue.put_nowait((stream, msg))
                    except asyncio.QueueFull:
                        with contextlib.suppress(asyncio.QueueFull):
                            queue.put_nowait(OVERFLOW)

                subs.append(await js.subscribe(filters[0], stream=stream, cb=cb, ordered_consumer=True,
                                               config=cfg))
            # only once the consumers exist: a new-events consumer starts where the stream is when it is
            # made, so an event the client causes after "connected" (or after the reset) reaches it
            yield b"retry: 3000\n: connected\n\n"
            if reset is not None:
                yield reset
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=self.heartbeat)
                except TimeoutError:
                    item = None
                person = now_who()
                if person is None:
                    yield sse(f"closed:{int(time.time() * 1000)}", "stream.closed",
                              '{"reason":"you are no longer in the organisation",'
                              '"reason_sv":"du finns inte längre i organisationen"}')
                    return
                if item is None:
                    yield f": heartbeat {datetime.now(UTC).isoformat(timespec='seconds')}\n\n".encode()
                    continue
                if item is OVERFLOW:
                    yield sse(f"overflow:{int(time.time() * 1000)}", "stream.overflow",
                              '{"reason":"client too slow; reconnect with Last-Event-ID"}')
                    return
                stream, msg = item
                out = self._render(stream, msg, person, who)
                if out is not None:
                    yield out
        finally:
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    def _start(self, stream: str, resume: Position | None, since: datetime | None) -> ConsumerConfig:
        if resume is not None and resume.stream == stream:
            return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=resume.seq + 1)
        start = resume.at - timedelta(seconds=self.resume_margin) if resume is not None else since
        if start is not None:
            return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME,
                                  opt_start_time=start.astimezone(UTC))
        return ConsumerConfig(deliver_policy=DeliverPolicy.NEW)

    def _render(self, stream: str, msg: Any, person: Caller, who: Audience) -> bytes | None:
        try:
            doc = json.loads(msg.data)
            event_id, event_type = str(doc["id"]), str(doc["type"])
            data = doc["data"]
            kind = kind_of(event_type)
            municipality_id, area_id = message_scope(kind, data)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        md = msg.metadata
        self.remember(event_id, Position(stream, md.sequence.stream, md.timestamp))
        if not may_receive(person, kind, municipality_id, area_id):
            return None
        doc["data"] = render_for(kind, data, who)
        if self.on_event is not None:
            self.on_event()
        return sse(event_id, event_type, json.dumps(doc, ensure_ascii=False, separators=(",", ":")))
