"""Helpers of the aggregator tests: a small world (municipality, areas, people), report events, a running
aggregator, a bus tap and waiting for a picture."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
from est_aggregator.adapters.unit_of_work import PooledUnitOfWork
from est_aggregator.app import Settings, build_deps, create_app
from est_aggregator.metrics import AggregatorMetrics
from est_aggregator.pictures import db
from est_aggregator.pictures.deps import Deps
from est_shared.bus import encode, publish_raw
from est_shared.db import make_engine, session_factory
from est_shared.events import Answer, ReportSubmitted, new_event
from est_shared.org import Actor, Area, Municipality, OrgSnapshot, Person, hash_token
from est_shared.periods import Period
from est_shared.subjects import report_submitted
from est_shared.testing import serve
from nats.js.api import ConsumerConfig
from prometheus_client import CollectorRegistry

from tests.support import eventually

_versions = itertools.count(int(time.time()))


@dataclass
class World:
    """One test's own municipality and area, with tokens."""

    muni: str
    area: str
    org: OrgSnapshot

    def headers(self, who: str = "kf") -> dict[str, str]:
        return {"Authorization": f"Bearer tok-{who}-{self.muni}"}


def make_world(cadence: str = "weekly") -> World:
    muni = f"m{uuid.uuid4().hex[:8]}"
    area = f"a{uuid.uuid4().hex[:8]}"
    people = {
        "anna": Person(id="anna", name="Anna", actor="hem", roles=["reporter"], areas=[area],
                       token_sha256=hash_token(f"tok-anna-{muni}")),
        "bo": Person(id="bo", name="Bo", actor="hem", roles=["reporter"], areas=[area]),
        "cy": Person(id="cy", name="Cy", actor="polis", roles=["reporter"], areas=[area]),
        "kf": Person(id="kf", name="Kim", actor="kommun", roles=["key_function"], areas=[area],
                     token_sha256=hash_token(f"tok-kf-{muni}")),
        "adm": Person(id="adm", name="Admin", actor="kommun", roles=["admin"], areas=[],
                      token_sha256=hash_token(f"tok-adm-{muni}")),
    }
    org = OrgSnapshot(
        version=next(_versions) * 10,
        municipalities={muni: Municipality(id=muni, name="Testkommun", area_ids=[area])},
        areas={area: Area(id=area, name="Testområdet", municipality_id=muni, cadence=cadence,  # type: ignore[arg-type]
                          places=["centrum", "torget"])},
        actors={"hem": Actor(id="hem", name="Hem AB", kind="property_company"),
                "polis": Actor(id="polis", name="Polisen", kind="police"),
                "kommun": Actor(id="kommun", name="Kommunen", kind="municipality")},
        people=people)
    return World(muni, area, org)


def report(world: World, rid: str | None = None, answers: dict[str, Any] | None = None, *,
           period: str = "2026-W10", reporter: str = "anna", actor: str = "hem", area: str | None = None,
           supersedes: str | None = None, nothing: bool = False, checklist: str = "est-standard@1",
           municipality: str | None = None) -> Any:
    rid = rid or str(uuid.uuid4())
    received = datetime.combine(Period.parse(period).start, datetime.min.time(), UTC) + timedelta(days=2)
    ans = {k: Answer(**v) if isinstance(v, dict) else Answer(value=v) for k, v in (answers or {}).items()}
    data = ReportSubmitted(report_id=rid, municipality_id=municipality or world.muni, area_id=area or world.area,
                           period=period,
                           checklist=checklist, answers=ans, nothing_to_report=nothing,
                           supersedes=supersedes, reporter_id=reporter, actor_id=actor, received_at=received)
    return new_event(type="se.est.report.submitted", source="/test", data=data, id=rid, subject=area or world.area)


def settings_for(world: World, nats_url: str, data_dir: Path, **over: Any) -> Settings:
    values: dict[str, Any] = dict(nats_url=nats_url, data_dir=data_dir, durable=f"agg-{world.muni}",
                                  report_subject=f"est.report.submitted.{world.muni}.>",
                                  auto_publish_interval=0, outbox_interval=0.1, log_level="WARNING",
                                  update_interval=0.1, revise_delay=0.3)
    values.update(over)
    return Settings(**values)


@asynccontextmanager
async def running(world: World, settings: Settings,
                  before: Callable[[Any], None] | None = None) -> AsyncIterator[tuple[str, Any]]:
    """The aggregator app served on a free port, with the world's organisation applied."""
    app = create_app(settings)
    if before:
        before(app)
    async with serve(app) as base:
        await app.state.runtime.apply_org(world.org)
        yield base, app


class Bus:
    """A nats-py connection to publish reports and watch output subjects."""

    def __init__(self, nc: Any) -> None:
        self.nc, self.js = nc, nc.jetstream()

    async def send(self, event: Any, *, again: bool = False) -> None:
        subject = report_submitted(event.data.municipality_id, event.data.area_id)
        if again:  # a re-publish the stream does not de-duplicate: only the consumer can
            await publish_raw(self.js, subject, event.model_dump_json(exclude_none=True).encode(),
                              msg_id=f"{event.id}:again:{uuid.uuid4().hex[:6]}")
        else:  # the stream de-duplicates it as it would the intake's; the id is the municipality's own, since
            # tests share one server and its window would drop another test's report of the same name
            await publish_raw(self.js, subject, encode(event), msg_id=f"{event.data.municipality_id}:{event.id}")

    async def tap(self, subject: str, stream: str) -> Any:
        # the server removes an ephemeral consumer nobody fetched from for its inactive threshold (5 s by
        # default): a test that taps first and reads after a slow phase would find it gone
        return await self.js.pull_subscribe(subject, stream=stream, config=ConsumerConfig(inactive_threshold=120))

    @staticmethod
    async def take(sub: Any, n: int = 1, timeout: float = 8.0) -> list[dict[str, Any]]:
        return [json.loads(m.data) for m in await Bus.take_messages(sub, n, timeout)]

    @staticmethod
    async def take_messages(sub: Any, n: int = 1, timeout: float = 8.0) -> list[Any]:
        """Up to ``n`` messages (with their headers) within ``timeout``, acknowledged."""
        out: list[Any] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(out) < n:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            try:
                msgs = await sub.fetch(n - len(out), timeout=min(left, 1.0))
            except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises either when the time runs out
                continue
            for m in msgs:
                await m.ack()
                out.append(m)
        return out


async def picture_when(client: httpx.AsyncClient, base: str, world: World, period: str,
                       cond: Callable[[dict[str, Any]], bool], *, area: str | None = None,
                       who: str = "kf", timeout: float = 10.0) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        r = await client.get(f"{base}/v1/areas/{area or world.area}/pictures/{period}", headers=world.headers(who))
        if r.status_code != 200:
            return None
        body = r.json()
        return body if cond(body) else None

    return await eventually(check, timeout=timeout)  # type: ignore[no-any-return]


@asynccontextmanager
async def built_deps(tmp_path: Path, url: str = "", *, pooled: bool = False) -> AsyncIterator[Deps]:
    """The use cases' collaborators as the app builds them for ``url`` (empty: the in-loop SQLite file);
    ``pooled``: the SQLAlchemy statements on pooled sessions whatever the database."""
    settings = Settings(data_dir=tmp_path, database_url=url)
    engine = make_engine(settings.db_url())
    async with engine.begin() as conn:
        await conn.run_sync(db.metadata.create_all)
    deps, local = build_deps(settings, engine, AggregatorMetrics(CollectorRegistry()))
    if pooled:
        sessions = session_factory(engine)
        deps = Deps(sessions=sessions, metrics=deps.metrics, store=db.SqlBatchStore(), rules=deps.rules,
                    units=PooledUnitOfWork(sessions, serialise_writes=engine.dialect.name == "sqlite"))
    try:
        yield deps
    finally:
        if local is not None:
            local.dispose()
        await engine.dispose()
