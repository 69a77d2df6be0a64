"""The live stream for dashboards: ``GET /v1/stream`` as server-sent events from JetStream.

Each connection reads the PICTURES, ALERTS and ANALYSES streams through ephemeral ordered consumers
(filtered to the caller's municipalities and areas), renders every event as the caller may see it
(``domain.render_for``) and writes it as one SSE message: ``id:`` the event id, ``event:`` its type,
``data:`` the CloudEvent JSON on one line. A comment line is sent after ``heartbeat`` seconds without
an event so proxies keep the connection open.

Resuming: a client that reconnects with ``Last-Event-ID`` (browsers do this by themselves) gets the
events after that one. The id is looked up in an in-memory index of recently streamed events, or
else by scanning the message headers (``Nats-Msg-Id``) of the last ``resume_window`` seconds. Its
own stream resumes at the next sequence; the other two at its time minus ``resume_margin`` (order
across streams is not defined), so a few events around the resume point may come again: clients
de-duplicate by id. An unknown id gives a ``stream.reset`` event and then live events.
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

from est_notifier.domain import Audience, audience, render_for

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
    """Per stream, the subjects a caller may read (admins: everything)."""
    if "admin" in p.roles:
        return {PICTURES.name: ["est.picture.updated.>", "est.picture.published.>"],
                ALERTS.name: ["est.alert.>"], ANALYSES.name: ["est.analysis.published.>"]}
    pairs = sorted({(m, a) for a in p.areas if (m := municipality_of(a))})
    munis = sorted({m for m, _ in pairs} | set(p.municipalities))
    return {
        PICTURES.name: [f"est.picture.{k}.{m}.{a}" for m, a in pairs for k in ("updated", "published")],
        ALERTS.name: [f"est.alert.*.{m}.{a}" for m, a in pairs],
        ANALYSES.name: [f"est.analysis.published.{m}" for m in munis],
    }


def visible(doc: dict[str, Any], p: Principal) -> bool:
    """Whether the caller may see an event at all (areas; municipality for analyses)."""
    if "admin" in p.roles:
        return True
    data = doc.get("data") or {}
    area = (data.get("picture") or {}).get("area_id") if "picture" in data else data.get("area_id")
    if area is not None:
        return str(area) in p.areas
    return str(data.get("municipality_id")) in p.municipalities


def kind_of(event_type: str) -> str:
    return event_type.removeprefix("se.est.")


def sse(event_id: str, event_type: str, data: str) -> bytes:
    """One SSE message (the data is one line of JSON)."""
    return f"id: {event_id}\nevent: {event_type}\ndata: {data}\n\n".encode()


class StreamHub:
    """Opens the per-connection consumers and remembers where recent events are, for resuming."""

    def __init__(self, *, js: Callable[[], Any], heartbeat: float = 15.0, index_size: int = 50_000,
                 resume_window: float = 7 * 86400, resume_margin: float = 30.0, queue_size: int = 10_000,
                 on_event: Callable[[], None] | None = None) -> None:
        self.js, self.heartbeat, self.index_size = js, heartbeat, index_size
        self.resume_window, self.resume_margin, self.queue_size = resume_window, resume_margin, queue_size
        self.on_event = on_event
        self._index: OrderedDict[str, Position] = OrderedDict()

    def remember(self, event_id: str, pos: Position) -> None:
        self._index[event_id] = pos
        self._index.move_to_end(event_id)
        while len(self._index) > self.index_size:
            self._index.popitem(last=False)

    async def locate(self, event_id: str) -> Position | None:
        """Where an event id is: from the index, else by scanning recent headers of each stream."""
        if event_id in self._index:
            return self._index[event_id]
        since = datetime.now(UTC) - timedelta(seconds=self.resume_window)
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
            await asyncio.wait_for(done.wait(), timeout=10)
        except TimeoutError:
            log.warning("resume scan timed out", extra={"stream": stream})
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return found[0] if found else None

    async def events(self, p: Principal, *, municipality_of: Callable[[str], str | None],
                     last_event_id: str | None, since: datetime | None) -> AsyncIterator[bytes]:
        """The SSE byte stream of one connection; ends when the client goes away (cancellation)."""
        who: Audience = audience(roles=p.roles, areas=p.areas, actor_kind=p.actor_kind)
        resume: Position | None = None
        reset: bytes | None = None
        if last_event_id:
            resume = await self.locate(last_event_id)
            if resume is None:
                reason = {"reason": "unknown Last-Event-ID; continuing with new events",
                          "reason_sv": "okänt Last-Event-ID; fortsätter med nya händelser",
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
                    yield f": heartbeat {datetime.now(UTC).isoformat(timespec='seconds')}\n\n".encode()
                    continue
                if item is OVERFLOW:
                    yield sse(f"overflow:{int(time.time() * 1000)}", "stream.overflow",
                              '{"reason":"client too slow; reconnect with Last-Event-ID"}')
                    return
                stream, msg = item
                out = self._render(stream, msg, p, who)
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

    def _render(self, stream: str, msg: Any, p: Principal, who: Audience) -> bytes | None:
        try:
            doc = json.loads(msg.data)
            event_id, event_type = str(doc["id"]), str(doc["type"])
        except (ValueError, KeyError, TypeError):
            return None
        md = msg.metadata
        self.remember(event_id, Position(stream, md.sequence.stream, md.timestamp))
        if not visible(doc, p):
            return None
        data = doc.get("data")
        if isinstance(data, dict):
            doc["data"] = render_for(kind_of(event_type), data, who)
        if self.on_event is not None:
            self.on_event()
        return sse(event_id, event_type, json.dumps(doc, ensure_ascii=False, separators=(",", ":")))
