"""The part of every service's composition root that is the same everywhere.

``ServiceRuntime`` builds the FastAPI app (problem+json errors, ``/healthz``, ``/readyz``,
``/metrics``, ``/docs``, ``/asyncapi.json``), the FastStream NATS broker, the metrics registry,
outbox relays, and the organisation directory fed from ``est.org.changed``. Each service's
``create_app(settings)`` makes one, adds its routes, consumers and background tasks, and returns
``runtime.app``. Nothing connects before the app's lifespan starts.

The organisation: ``est.org.changed`` only announces a version (the snapshot is an object in
``EST_ORG_SNAPSHOTS``, see ``est_shared.bus.load_org_snapshot``). The subscriber notes the newest
announced version; one task loads and applies it, retrying while the object is not readable yet, and
every ``org_poll_interval`` seconds also asks the stream for its newest event, in case a delivery was
missed. Applying a version ends the event streams whose caller it no longer lets in as before.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from fastapi import FastAPI
from faststream.nats import DeliverPolicy, JStream, NatsBroker
from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from est_shared.adapters.oidc_http import fetch_json
from est_shared.adapters.schema import ping
from est_shared.bus import (
    BusUnavailable,
    PoisonEvent,
    SnapshotMissing,
    ensure_streams,
    latest_org_change,
    load_org_snapshot,
    make_broker,
)
from est_shared.db import Gate, OutboxMetrics, OutboxRelay
from est_shared.events import CloudEvent, EventData, OrgChanged, envelope_of
from est_shared.http import (
    RECHECK,
    BodySizeLimit,
    CorrelationId,
    HttpMetrics,
    RequestGuard,
    add_ops_routes,
    bearer_principal,
    install_problem_handlers,
)
from est_shared.observability import BusMetrics, error_name, setup_logging, watch_loop
from est_shared.oidc import OidcConfig, OidcVerifier
from est_shared.org import Directory, OrgSnapshot, Principal
from est_shared.settings import ServiceSettings
from est_shared.subjects import ORG, ORG_CHANGED

log = logging.getLogger("est.runtime")

Hook = Callable[[], Awaitable[None]]
Check = Callable[[], bool | str]
"""A readiness check: True (ok), False (unavailable) or a text saying how the service is degraded."""


GC_THRESHOLD = (20_000, 10, 10)


def tune_gc() -> None:
    """Garbage-collector settings for a long-running service, applied once start-up is done.

    The objects that exist after start-up (the app, schemas, the organisation) live as long as the
    process: ``gc.freeze`` takes them out of every later collection, which otherwise walks them all
    again and again. Reference counting frees almost everything a request makes, so the first
    generation is collected after 20,000 net new container objects instead of 700: under load the
    default collected hundreds of times a second and took a fifth of the intake's CPU.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


class ServiceRuntime:
    """Shared wiring of one service process; see the module docstring."""

    def __init__(self, *, name: str, title: str, description: str, settings: ServiceSettings,
                 engine: AsyncEngine | None = None, max_body_bytes: int = 2_000_000,
                 body_limits: Mapping[tuple[str, str], int] | None = None, version: str = "0.1.0") -> None:
        self.name, self.settings, self.engine = name, settings, engine
        setup_logging(name, settings.log_level)
        self.registry = CollectorRegistry()
        self.metrics = BusMetrics(name, self.registry)
        self.directory = Directory()
        self.org_version = Gauge(f"est_{name}_org_version", "Organisation snapshot version in use",
                                 registry=self.registry)
        self.broker = make_broker(settings.nats_servers, registry=self.registry, service=name, metrics=self.metrics)
        self._documented = NatsBroker()  # never started: channels consumed by our own pullers, for AsyncAPI
        self._on_start: list[Hook] = []
        self._on_stop: list[Hook] = []
        self._org_listeners: list[Callable[[OrgSnapshot], Awaitable[None]]] = []
        self._checks: dict[str, Check] = {}
        self.relays: list[OutboxRelay] = []
        self.tables = Gate("tabellerna", "the tables")
        """Opens once the service's tables exist: consumers wait for it, routes that need the database answer
        503 until then (``runtime.tables.require()``). The start hooks create them, so it opens after them,
        unless a service makes its tables later itself (``tables_after_start = False``, then ``tables.open()``)."""
        self.tables_after_start = True
        self.add_check("tables", lambda: self.tables.is_open)
        self._outbox_metrics: OutboxMetrics | None = None
        self._announced: OrgChanged | None = None
        self._org_wake = asyncio.Event()
        self.tasks: list[asyncio.Task[Any]] = []
        self.app = FastAPI(title=title, description=description, version=version, lifespan=self._lifespan)
        self.streams = OpenStreams()
        self.app.add_middleware(RevocableStreams, streams=self.streams,
                                directory=lambda: self.directory)
        self.app.add_middleware(_BodyLimits, max_bytes=max_body_bytes, routes=dict(body_limits or {}))
        self.app.add_middleware(CorrelationId)
        self.app.add_middleware(HttpMetrics, histogram=self.metrics.http_duration)
        self.app.add_middleware(RequestGuard)  # outermost: nothing inside sees a request it refuses
        install_problem_handlers(self.app)
        add_ops_routes(self.app, registry=self.registry, ready=self.ready)
        oidc = OidcConfig.from_settings(settings)
        fetches, tokens = self.metrics.oidc_key_fetches, self.metrics.access_tokens
        self.oidc = OidcVerifier(oidc, fetch_json, on_fetch=lambda o: fetches.labels(o).inc()) if oidc else None
        """The OpenID provider's access tokens, when ``EST_OIDC_ISSUER`` is set (``est_shared.oidc``)."""
        self.principal = bearer_principal(lambda: self.directory, self.oidc,
                                          on_access_token=lambda o: tokens.labels(o).inc())
        self.app.state.runtime = self
        self._add_org_consumer()
        self._add_asyncapi_route()

    # --- hooks ---------------------------------------------------------------------------
    def on_start(self, hook: Hook) -> None:
        """Run after NATS is connected and the streams exist, before consumers start."""
        self._on_start.append(hook)

    def on_stop(self, hook: Hook) -> None:
        """Run before the broker is closed (in reverse order of registration)."""
        self._on_stop.append(hook)

    def on_org_changed(self, listener: Callable[[OrgSnapshot], Awaitable[None]]) -> None:
        """Be told about every newer organisation snapshot."""
        self._org_listeners.append(listener)

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        """Start a background task that is kept and cancelled at shutdown."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self.tasks.append(task)
        return task

    @property
    def js(self) -> Any:
        """The JetStream context (after start)."""
        return self.broker.config.connection_state.stream

    def outbox_relay(self, *, sessions: async_sessionmaker[AsyncSession], table: Table, **kwargs: Any) -> OutboxRelay:
        """An outbox relay on this runtime's JetStream connection (call it after start), counted in the
        ``outbox_failed`` metrics and in ``/readyz``: degraded while rows are set aside."""
        if self._outbox_metrics is None:
            self._outbox_metrics = OutboxMetrics(self.name, self.registry)
        relay = OutboxRelay(sessions=sessions, table=table, js=self.js, metrics=self._outbox_metrics, **kwargs)

        def check() -> bool | str:
            if not relay.failed:
                return True
            return (f"{relay.failed} händelser i utkorgen kan aldrig publiceras och har lagts åt sidan (se "
                    f"est_{self.name}_outbox_failed_events och loggen) / {relay.failed} outbox events can never "
                    f"be published and were set aside (see est_{self.name}_outbox_failed_events and the log)")

        self.add_check(f"outbox_{table.name}" if table.name != "outbox" else "outbox", check)
        self.relays.append(relay)
        return relay

    def wake_outbox(self) -> None:
        """Tell every outbox relay of this service that new rows are waiting (after a commit that added some)."""
        for relay in self.relays:
            relay.wake()

    # --- readiness -----------------------------------------------------------------------
    def add_check(self, name: str, check: Check) -> None:
        """Add a readiness check to ``/readyz`` (False: unavailable, 503; a text: degraded, still 200)."""
        self._checks[name] = check

    async def ready(self) -> dict[str, bool | str]:
        checks: dict[str, bool | str] = {"nats": False, "database": self.engine is None}
        try:
            checks["nats"] = bool(self.broker.connection.is_connected)
        except Exception:
            checks["nats"] = False
        if self.engine is not None:
            try:
                await ping(self.engine)
                checks["database"] = True
            except Exception:
                checks["database"] = False
        for name, check in self._checks.items():
            try:
                checks[name] = check()
            except Exception:
                log.exception("readiness check failed", extra={"check": name})
                checks[name] = False
        return checks

    # --- organisation --------------------------------------------------------------------
    async def apply_org(self, snapshot: OrgSnapshot) -> None:
        if snapshot.version <= self.directory.snapshot.version:
            return
        self.directory.replace(snapshot)
        self.org_version.set(snapshot.version)
        closed = self.streams.revalidate(self.directory)
        if closed:
            log.info("event streams closed: their callers' access changed",
                     extra={"org_version": snapshot.version, "streams": closed})
        for listener in self._org_listeners:
            try:
                await listener(snapshot)
            except Exception:  # one listener's failure must not stop the others or the service
                log.exception("organisation listener failed", extra={"org_version": snapshot.version})

    def _announce(self, data: OrgChanged) -> None:
        """Note a version announced on the bus; the follower (``_follow_org``) loads and applies the newest."""
        known = max(self.directory.snapshot.version, self._announced.version if self._announced else 0)
        if data.version > known:
            self._announced = data
            self._org_wake.set()

    def _add_org_consumer(self) -> None:
        async def _org_changed(event: CloudEvent[OrgChanged]) -> None:
            self._announce(event.data)

        _org_changed.__annotations__ = {"event": envelope_of(OrgChanged), "return": None}
        self.broker.subscriber(ORG_CHANGED, stream=JStream(ORG.name, declare=False),
                               deliver_policy=DeliverPolicy.LAST_PER_SUBJECT, title=f"{self.name}:org",
                               description="se.est.org.changed: a new organisation version, its snapshot in the "
                                           "object store EST_ORG_SNAPSHOTS (every service follows the newest)",
                               )(_org_changed)

    # --- the event contract (AsyncAPI) ---------------------------------------------------------
    def declare_published(self, subject: str, data: type[EventData], *, types: Sequence[str], description: str
                          ) -> None:
        """Document a channel this service publishes on (through its outbox or its own publisher) with the
        CloudEvents envelope and the schema of ``data``."""
        self.broker.publisher(subject, schema=envelope_of(data), title=f"{self.name}:{', '.join(types)}",
                              description=f"{', '.join(types)}: {description}")

    def declare_consumed(self, subject: str, data: type[EventData], *, types: Sequence[str], description: str
                         ) -> None:
        """Document a channel this service consumes with a puller of its own (not a FastStream subscriber)."""

        async def documented(event: CloudEvent[Any]) -> None:  # never called: the document's broker never starts
            del event

        documented.__annotations__ = {"event": envelope_of(data), "return": None}
        self._documented.subscriber(subject, title=f"{self.name}:{', '.join(types)}",
                                    description=f"{', '.join(types)}: {description}")(documented)

    def asyncapi(self) -> dict[str, Any]:
        """The AsyncAPI 3 document of every channel this service consumes and publishes."""
        from faststream.specification import AsyncAPI

        title = f"EST Lägesbild – {self.name} events"
        main = AsyncAPI(self.broker, title=title, version="0.1.0").to_specification().to_jsonable()
        extra = AsyncAPI(self._documented, title=title, version="0.1.0").to_specification().to_jsonable()
        for key in ("channels", "operations"):
            main.setdefault(key, {}).update(extra.get(key, {}))
        for key, values in extra.get("components", {}).items():
            main.setdefault("components", {}).setdefault(key, {}).update(values)
        return dict(main)

    async def _load_org(self) -> None:
        """At start: the newest version on the stream, applied if its snapshot can be read now (else the
        follower keeps trying)."""
        try:
            data = await latest_org_change(self.js)
        except PoisonEvent as exc:
            log.error("latest organisation event unreadable; waiting for the next one", extra={"error": str(exc)})
            return
        if data is None:
            return
        self._announce(data)
        try:
            await self.apply_org(await load_org_snapshot(self.js, data))
        except (SnapshotMissing, BusUnavailable, PoisonEvent) as exc:
            log.warning("organisation snapshot not readable at start; retrying in the background",
                        extra={"org_version": data.version, "error": str(exc)})

    async def _follow_org(self) -> None:
        """Apply the newest announced organisation version; retry with backoff while its snapshot cannot be read."""
        loop = asyncio.get_running_loop()
        poll = self.settings.org_poll_interval
        next_poll = loop.time() + poll
        delay = 0.2
        while True:
            wanted = self._announced
            wait = max(0.0, next_poll - loop.time())
            if wanted is not None and wanted.version > self.directory.snapshot.version:
                try:
                    await self.apply_org(await load_org_snapshot(self.js, wanted))
                    delay = 0.2
                    continue
                except PoisonEvent as exc:
                    log.error("organisation event names no snapshot; waiting for the next one",
                              extra={"org_version": wanted.version, "error": str(exc)})
                    if self._announced is wanted:
                        self._announced = None
                except (SnapshotMissing, BusUnavailable, TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
                    log.warning("organisation version not loaded yet; retrying",
                                extra={"org_version": wanted.version, "error": str(exc)[:300]})
                    wait, delay = delay, min(delay * 2, 5.0)
                except Exception:  # e.g. a snapshot that does not validate: try again later, loudly
                    log.exception("could not apply organisation version", extra={"org_version": wanted.version})
                    wait, delay = delay, min(delay * 2, 5.0)
            try:
                await asyncio.wait_for(self._org_wake.wait(), wait)
            except TimeoutError:
                pass
            self._org_wake.clear()
            if loop.time() >= next_poll:
                next_poll = loop.time() + poll
                try:
                    data = await latest_org_change(self.js)
                except Exception as exc:  # NATS away: the next round asks again
                    log.debug("could not read the latest organisation event", extra={"error": error_name(exc)})
                    continue
                if data is not None:
                    self._announce(data)

    async def _report_lag(self, interval: float = 10.0) -> None:
        """Keep the consumer lag gauges current (JetStream consumer info)."""
        while True:
            for stream, durable in list(self.metrics.consumers):
                try:
                    info = await self.js.consumer_info(stream, durable)
                except Exception:  # consumer not created yet, or NATS away: try again next round
                    continue
                self.metrics.consumer_pending.labels(durable).set(info.num_pending or 0)
                self.metrics.consumer_ack_pending.labels(durable).set(info.num_ack_pending or 0)
                self.metrics.consumer_redelivered.labels(durable).set(info.num_redelivered or 0)
            await asyncio.sleep(interval)

    def _add_asyncapi_route(self) -> None:
        @self.app.get("/asyncapi.json", tags=["ops"], summary="AsyncAPI document of this service's events")
        async def asyncapi() -> dict[str, Any]:
            return self.asyncapi()

    # --- lifespan ------------------------------------------------------------------------
    @asynccontextmanager
    async def _lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        await self._connect()
        try:
            await self.until_ready("create the streams",
                              lambda: ensure_streams(self.js, replicas=self.settings.stream_replicas))
            await self.until_ready("read the organisation", self._load_org)
            for hook in self._on_start:  # before consuming: hooks create tables, start relays
                await hook()
            if self.tables_after_start:
                self.tables.open()
            await self.broker.start()
            self.spawn(self._follow_org(), "org-follower")
            self.spawn(self._report_lag(), "consumer-lag")
            self.spawn(watch_loop(self.metrics.loop_lag), "loop-lag")
            if self.settings.gc_tuning:
                tune_gc()
            log.info("service started", extra={"service": self.name})
            yield
        finally:
            for hook in reversed(self._on_stop):
                try:
                    await hook()
                except Exception:
                    log.exception("stop hook failed")
            for relay in self.relays:  # before the broker: a relay publishes on its connection
                await relay.stop()
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            self.tasks.clear()
            await self.broker.stop()
            if self.engine is not None:
                await self.engine.dispose()
            log.info("service stopped", extra={"service": self.name})

    async def until_ready(self, what: str, step: Callable[[], Awaitable[None]], timeout: float = 60.0) -> None:
        """Run a start-up step against JetStream until it works: right after a cluster starts or loses a
        node, its API answers with timeouts until the streams have leaders (a service's own start hooks use
        it too, e.g. the intake storing its first organisation snapshot)."""
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + timeout, 0.2
        while True:
            try:
                await step()
                return
            except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError,
                    BusUnavailable):
                if loop.time() > deadline:
                    raise
                log.warning(f"JetStream not ready to {what} yet; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 3.0)

    async def _connect(self) -> None:
        delay = 0.2
        while True:
            try:
                await self.broker.connect()
                return
            except Exception as exc:
                log.warning("NATS not reachable yet, retrying", extra={"error": error_name(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


class _BodyLimits:
    """``BodySizeLimit`` with a limit of their own for some routes, keyed (method, path)."""

    def __init__(self, app: ASGIApp, max_bytes: int, routes: dict[tuple[str, str], int]) -> None:
        self.default = BodySizeLimit(app, max_bytes=max_bytes)
        self.routes = {key: BodySizeLimit(app, max_bytes=limit) for key, limit in routes.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.routes.get((scope.get("method", ""), scope.get("path", ""))) if scope["type"] == "http" else None
        await (limit or self.default)(scope, receive, send)


STREAM_CLOSED = "stream.closed"
_CLOSED_DATA = {
    "access_changed": json.dumps({"reason": "access_changed",
                                  "reason_sv": "din behörighet har ändrats; anslut igen",
                                  "reason_en": "your access has changed; connect again"}, ensure_ascii=False),
    "signed_out": json.dumps({"reason": "signed_out",
                              "reason_sv": "du finns inte längre i organisationen eller din inloggning har ändrats",
                              "reason_en": "you are no longer in the organisation or your sign-in has changed"},
                             ensure_ascii=False),
}


@dataclass(eq=False)
class _OpenStream:
    token: str
    inner: asyncio.Future[None]
    principal: Principal | None = None
    finished: bool = False
    revoked: str | None = None  # why it was ended: a key of _CLOSED_DATA
    recheck: Callable[[Directory], Principal | None] | None = None  # the caller again (a JWT's), else by token

    def caller(self, directory: Directory) -> Principal | None:
        """Who the stream's caller is in this organisation (None: nobody any more)."""
        return self.recheck(directory) if self.recheck is not None else directory.authenticate(self.token)


class OpenStreams:
    """The event streams open on a service, with the principal each was opened for."""

    def __init__(self) -> None:
        self.open: set[_OpenStream] = set()

    def revalidate(self, directory: Directory) -> int:
        """End the streams whose token now means another principal or none; returns how many."""
        closed = 0
        for stream in list(self.open):
            now = None if stream.finished else stream.caller(directory)
            if not stream.finished and now != stream.principal:
                stream.revoked = "signed_out" if now is None else "access_changed"
                stream.inner.cancel()
                closed += 1
        return closed


class RevocableStreams:
    """ASGI middleware: ends an event stream (``text/event-stream``) when its caller's bearer token no longer
    lets in the same principal: the person was removed, their token changed, or their roles or areas did
    (a stream is filtered by what the caller may see when it opens). The stream ends cleanly with an
    ``event: stream.closed``; a reconnect is answered by the current organisation (401 for a revoked token).

    A GET with a bearer token runs in a task of its own, which ``OpenStreams.revalidate`` cancels; other
    requests pass straight through.
    """

    def __init__(self, app: ASGIApp, streams: OpenStreams, directory: Callable[[], Directory]) -> None:
        self.app, self.streams, self.directory = app, streams, directory

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _bearer(scope) if scope["type"] == "http" and scope["method"] == "GET" else None
        if not token:
            await self.app(scope, receive, send)
            return
        stream: _OpenStream | None = None

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start" and stream is not None and _is_event_stream(message):
                stream.recheck = scope.get(RECHECK)
                stream.principal = stream.caller(self.directory())
                if stream.principal is not None:
                    self.streams.open.add(stream)
            elif message["type"] == "http.response.body" and not message.get("more_body", False) \
                    and stream is not None:
                stream.finished = True
            await send(message)

        inner = asyncio.ensure_future(self.app(scope, receive, watched))
        stream = _OpenStream(token=token, inner=inner)
        try:
            await inner
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not stream.revoked or (current is not None and current.cancelling()):
                raise  # the request itself is being cancelled (client gone, shutdown)
            if not stream.finished:
                body = (f"id: closed:{int(time.time() * 1000)}\nevent: {STREAM_CLOSED}\n"
                        f"data: {_CLOSED_DATA[stream.revoked]}\n\n").encode()
                await send({"type": "http.response.body", "body": body, "more_body": False})
        finally:
            self.streams.open.discard(stream)


def _bearer(scope: Scope) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() or None if scheme.lower() == "bearer" else None
    return None


def _is_event_stream(message: Message) -> bool:
    for key, value in message.get("headers") or ():
        if key.lower() == b"content-type":
            return bool(value.split(b";", 1)[0].strip().lower() == b"text/event-stream")
    return False
