"""Structured logs and Prometheus metrics on an explicit registry per service."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
"""The correlation id of the request or event being handled; logged with every line, copied into
events published while handling it, so one report can be followed through all four services."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    _skip = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        cid = correlation_id.get()
        if cid:
            out["correlation_id"] = cid
        for k, v in record.__dict__.items():
            if k not in self._skip and not k.startswith("_"):
                out[k] = v if isinstance(v, str | int | float | bool | type(None)) else str(v)
        if record.exc_info and record.exc_info[1] is not None:
            out["exc"] = safe_traceback(record.exc_info[1])
        return json.dumps(out, ensure_ascii=False)


def error_name(exc: BaseException) -> str:
    """The class of an error and of its cause, e.g. ``IntegrityError(UniqueViolationError)``: what logs,
    headers and ledgers say of an error, since its message can quote data (a driver quotes the statement's
    parameters, a validation error the value it refused)."""
    inner = getattr(exc, "orig", None) or exc.__cause__
    return f"{type(exc).__name__}({type(inner).__name__})" if inner is not None else type(exc).__name__


def safe_traceback(exc: BaseException) -> str:
    """A traceback without the exceptions' messages: where it happened (file, line, function, the source
    line) and which error classes, chained causes included, but none of the values an error quotes."""
    lines: list[str] = []
    seen: set[int] = set()
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    for i, err in enumerate(reversed(chain)):
        if i:
            lines.append("The above error led to:")
        lines.append("Traceback (most recent call last):")
        for frame in traceback.extract_tb(err.__traceback__):
            lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}')
            if frame.line:
                lines.append(f"    {frame.line}")
        lines.append(f"{type(err).__module__}.{type(err).__qualname__} (message withheld: it may quote data)")
    return "\n".join(lines)


def setup_logging(service: str, level: str = "INFO") -> None:
    """Route all logging to stderr as JSON lines; keep per-message framework logs quiet."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("faststream", "faststream.access", "uvicorn.access", "nats", "aiosqlite", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class BusMetrics:
    """Consumer and publisher metrics every service exports, named ``est_<service>_…``."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        p = f"est_{service}"
        self.events = Counter(f"{p}_events_total", "Events consumed, by type and outcome",
                              ["type", "outcome"], registry=registry)
        self.dead_lettered = Counter(f"{p}_dead_lettered_total", "Events sent to the dead-letter subject",
                                     ["reason"], registry=registry)
        self.handle_seconds = Histogram(f"{p}_event_handle_seconds", "Time to handle one event",
                                        registry=registry)
        self.published = Counter(f"{p}_events_published_total", "Events published to JetStream",
                                 ["type"], registry=registry)
        self.publish_failures = Counter(f"{p}_publish_failures_total", "Publishes that got no ack",
                                        registry=registry)
        self.consumer_pending = Gauge(f"{p}_consumer_pending_messages", "Events in the stream not yet delivered "
                                      "to the consumer (lag)", ["consumer"], registry=registry)
        self.consumer_ack_pending = Gauge(f"{p}_consumer_ack_pending_messages", "Events delivered but not yet "
                                          "acknowledged", ["consumer"], registry=registry)
        self.consumer_redelivered = Gauge(f"{p}_consumer_redelivered_messages", "Events being redelivered",
                                          ["consumer"], registry=registry)
        self.http_duration = Histogram(f"{p}_http_request_duration_seconds", "HTTP request durations",
                                       ["method", "route", "status"], registry=registry,
                                       buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.loop_lag = Histogram(f"{p}_event_loop_lag_seconds", "How late a short timer on the event loop "
                                  "fired: time the loop was busy with other work (every request and event waits "
                                  "as long)", registry=registry,
                                  buckets=(.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
        self.access_tokens = Counter(f"{p}_access_tokens_total", "Access tokens (JWT) of the OpenID provider by "
                                     "outcome: accepted, invalid (401), not_in_organisation (403), unavailable "
                                     "(503: the provider's keys could not be had)", ["outcome"], registry=registry)
        self.oidc_key_fetches = Counter(f"{p}_oidc_key_fetches_total", "Fetches of the OpenID provider's keys "
                                        "(discovery document and JWKS) by outcome: ok, failed", ["outcome"],
                                        registry=registry)
        self.consumers: list[tuple[str, str]] = []

    def track_consumer(self, stream: str, durable: str) -> None:
        """Report the lag of a durable consumer in the consumer_* gauges."""
        if (stream, durable) not in self.consumers:
            self.consumers.append((stream, durable))


async def watch_loop(histogram: Histogram, interval: float = 0.25) -> None:
    """Observe, every ``interval`` seconds, how late a timer fires on the running loop (its lag).

    A lag of tens of milliseconds means one step somewhere held the loop that long (a long
    synchronous query, a large JSON, a garbage collection): every request and event waited with it.
    """
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(interval)
        histogram.observe(max(0.0, loop.time() - start - interval))
