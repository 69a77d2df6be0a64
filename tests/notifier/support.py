"""Helpers of the notifier tests: an organisation, a webhook receiver, a running notifier."""

from __future__ import annotations

import asyncio
import email
import html
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.policy import default
from pathlib import Path
from typing import Any

import httpx
import nats
from aiosmtpd.controller import Controller
from est_notifier.adapters.webhook import Resolver
from est_notifier.app import Settings, create_app
from est_notifier.subscriptions import db
from est_notifier.subscriptions.domain import channel_target
from est_notifier.tables import Tables, ensure_schema, make_tables
from est_shared.bus import publish_event
from est_shared.db import make_engine, session_factory, transaction
from est_shared.events import (
    AlertData,
    AnalysisPublished,
    CloudEvent,
    Completeness,
    ForfeitureNotificationDue,
    ItemSummary,
    NoteSummary,
    PictureData,
    PicturePublished,
    PictureUpdated,
    new_event,
)
from est_shared.org import Actor, Area, Municipality, OrgSnapshot, Person, hash_token
from est_shared.sealed import PiiCipher, purpose_context, seal_json
from est_shared.subjects import alert_raised, picture_published
from est_shared.testing import free_port, serve
from fastapi import FastAPI, Request, Response
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker


@dataclass
class Org:
    """A small organisation with unique ids for one test."""

    m: str
    a1: str
    a2: str
    snapshot: OrgSnapshot
    tokens: dict[str, str]

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


def make_org() -> Org:
    """Municipality with two areas; owner sees a1, other sees a2, admin sees all."""
    suffix = uuid.uuid4().hex[:8]
    m, a1, a2 = f"m{suffix}", f"a1{suffix}", f"a2{suffix}"
    tokens = {w: f"tok-{w}-{suffix}" for w in ("owner", "other", "admin")}
    people = {
        "owner": Person(id=f"owner{suffix}", name="Olle Ägare", actor="vaxjohem", email="olle@example.org",
                        roles=["key_function"], areas=[a1], municipalities=[m],
                        token_sha256=hash_token(tokens["owner"])),
        "other": Person(id=f"other{suffix}", name="Ada Annan", actor="vaxjohem", roles=["reporter"], areas=[a2],
                        municipalities=[m], token_sha256=hash_token(tokens["other"])),
        "admin": Person(id=f"admin{suffix}", name="Adam Admin", actor="kommun", roles=["admin"], areas=[a1, a2],
                        municipalities=[m], token_sha256=hash_token(tokens["admin"])),
    }
    snapshot = OrgSnapshot(
        version=1,
        municipalities={m: Municipality(id=m, name="Växjö kommun", area_ids=[a1, a2])},
        areas={a1: Area(id=a1, name="Araby", municipality_id=m), a2: Area(id=a2, name="Teleborg", municipality_id=m)},
        actors={"vaxjohem": Actor(id="vaxjohem", name="Växjöhem AB", kind="property_company"),
                "kommun": Actor(id="kommun", name="Växjö kommun", kind="municipality")},
        people={p.id: p for p in people.values()},
    )
    return Org(m, a1, a2, snapshot, tokens)


def picture_event(org: Org, area: str | None = None, *, period: str = "2026-W48", version: int = 1,
                  event_id: str | None = None, comments: list[dict[str, Any]] | None = None) -> CloudEvent[Any]:
    """A published picture with one flagged item (and the key function's comments, if given)."""
    area = area or org.a1
    pic = PictureData(
        municipality_id=org.m, area_id=area, area_name="Araby", period=period, status="published", version=version,
        reports=3,
        items={"klotter": ItemSummary(item="klotter", answer="level", label_sv="Klotter", label_en="Graffiti",
                                      value=2, reports=2, previous=1, trend="up", flag="rising"),
               "brand": ItemSummary(item="brand", answer="count", label_sv="Anlagd brand",
                                    label_en="Deliberately set fire", value=1, reports=1, trend="new", flag="new")},
        completeness=Completeness(expected=4, received=3, on_time=3, rate=0.75),
        first_analysis={"sv": "Klottret ökar vid centrum.", "en": "Graffiti is rising near the centre."},
        comments=comments or [],
    )
    return new_event(type="se.est.picture.published", source="/est/aggregator", data=PicturePublished(picture=pic),
                     subject=area, id=event_id or f"picture:{area}:{period}:v{version}")


def alert_event(org: Org, *, severity: str = "warning", kind: str = "raised",
                period: str = "2026-W48") -> CloudEvent[Any]:
    data = AlertData(alert_id=f"al-{uuid.uuid4().hex[:6]}", municipality_id=org.m, area_id=org.a1, item="klotter",
                     kind="flag:high", period=period, severity=severity,  # type: ignore[arg-type]
                     message={"sv": "Klotter på hög nivå i Araby.", "en": "Graffiti at a high level in Araby."})
    return new_event(type=f"se.est.alert.{kind}", source="/est/aggregator", data=data, subject=org.a1,
                     id=f"alert:{data.alert_id}:{kind}")


def analysis_event(org: Org, *, period: str = "2026-T3") -> CloudEvent[Any]:
    """A strategic analysis of the municipality, with a municipality-wide summary."""
    data = AnalysisPublished(analysis_id=f"an-{uuid.uuid4().hex[:6]}", municipality_id=org.m, period=period,
                             summary={"sv": "Klotter kvarstår i Araby.", "en": "Graffiti persists in Araby."},
                             persistent_problems=[{"area_id": org.a1, "item": "klotter"}], report_path="/r")
    return new_event(type="se.est.analysis.published", source="/est/analysis", data=data, subject=org.m,
                     id=f"analysis:{data.analysis_id}")


def notification_event(org: Org, cipher: PiiCipher, person: dict[str, Any]) -> CloudEvent[Any]:
    """A forfeiture notification for social services, the person sealed as the intake seals it."""
    protocol_id = str(uuid.uuid4())
    data = ForfeitureNotificationDue(
        protocol_id=protocol_id, municipality_id=org.m, area_id=org.a1, place="centrum",
        occurred_at=datetime.now(UTC), age_band="15_17", reason="under_18", key_id=cipher.primary_id,
        sealed_person=seal_json(cipher, person, context=purpose_context(protocol_id)))
    return new_event(type="se.est.forfeiture.notification_due", source="/est/intake", data=data, subject=org.m,
                     id=f"notification:{protocol_id}")


@dataclass
class Receiver:
    """A real HTTP endpoint that records requests and answers from a script (then 200)."""

    script: list[int] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            self.requests.append((dict(request.headers), await request.body()))
            status = self.script.pop(0) if self.script else 200
            return Response(status_code=status, headers=self.headers if status != 200 else None)

        return app


@asynccontextmanager
async def receiver(script: list[int] | None = None, headers: dict[str, str] | None = None
                   ) -> AsyncIterator[Receiver]:
    r = Receiver(script=list(script or []), headers=headers or {})
    async with serve(r.app()) as base:
        r.url = f"{base}/hook"
        yield r


LOOPBACK_RECEIVERS = "127.0.0.1/32"
"""EST_NOTIFIER_WEBHOOK_ALLOW of tests whose receivers listen on loopback (refused by default)."""


async def notifier_db(url: str) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession], Tables]:
    """The notifier's tables in the database at ``url``: (engine, sessions, tables); dispose the engine after."""
    engine = make_engine(url)
    tables = make_tables()
    async with engine.begin() as conn:
        await conn.run_sync(ensure_schema, tables)
    return engine, session_factory(engine), tables


def notifier_settings(nats_url: str, tmp_path: Path, org: Org, **overrides: Any) -> Settings:
    """Settings isolated for one test: own durables, own municipality filter, tiny retry delays, webhooks
    allowed to loopback receivers (``webhook_allow=""`` for the default policy)."""
    tag = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "nats_url": nats_url, "data_dir": tmp_path, "log_level": "WARNING",
        "durable_pictures": f"np-{tag}", "durable_alerts": f"nal-{tag}", "durable_analyses": f"nan-{tag}",
        "municipality_filter": org.m, "poll_interval": 0.1, "retry_base_delay": 0.05, "retry_max_delay": 0.2,
        "max_attempts": 3, "http_timeout": 2.0, "consumer_ack_wait": 5.0, "durable_updates": f"nup-{tag}",
        "durable_notifications": f"nfn-{tag}",
        "reminders_enabled": False,
        "webhook_allow": LOOPBACK_RECEIVERS,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Running:
    """A running notifier with its base URL and an HTTP client."""

    app: FastAPI
    base: str
    http: httpx.AsyncClient
    org: Org

    async def subscribe(self, who: str = "owner", **spec: Any) -> dict[str, Any]:
        body = {"name": "Driftcentral", "scope": {"municipality_id": self.org.m, "area_ids": [self.org.a1]},
                "events": ["picture.published", "alert.raised", "alert.resolved", "analysis.published"],
                "language": "sv", "digest": "immediate"}
        body.update(spec)
        r = await self.http.post("/v1/subscriptions", json=body, headers=self.org.auth(who))
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    async def ledger(self, who: str = "owner", **params: str) -> list[dict[str, Any]]:
        r = await self.http.get("/v1/deliveries", params=params, headers=self.org.auth(who))
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


@asynccontextmanager
async def running_notifier(settings: Settings, org: Org, *, resolver: Resolver | None = None
                           ) -> AsyncIterator[Running]:
    """The notifier app served on a free port with the organisation applied (``resolver``: names of webhook
    hosts looked up by this function instead of the system)."""
    app = create_app(settings, resolver=resolver)
    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as http:
        await app.state.runtime.apply_org(org.snapshot)
        yield Running(app, base, http, org)


async def store_subscription(sessions: async_sessionmaker[AsyncSession], tables: Tables, *, owner_id: str,
                             municipality_id: str, area_ids: list[str], channel: dict[str, str],
                             events: list[str] | None = None, name: str = "stored") -> str:
    """A subscription written to the database as one made before today's rules were (a reporter's webhook, a
    webhook to loopback or with user-info in its URL); returns its id."""
    sub_id = str(uuid.uuid4())
    async with transaction(sessions) as s:
        await db.insert_subscription(s, tables, {
            "id": sub_id, "owner_id": owner_id, "name": name, "municipality_id": municipality_id,
            "area_ids": area_ids, "events": events or ["picture.published"], "channel": channel,
            "channel_target": channel_target(channel), "digest": "immediate", "language": "sv",
            "min_severity": None, "source": "api", "declared_key": None})
    return sub_id


async def publish(nats_url: str, subject: str, event: CloudEvent[Any]) -> None:
    nc = await nats.connect(nats_url)
    try:
        await publish_event(nc.jetstream(), subject, event)
    finally:
        await nc.close()


def picture_subject(org: Org, area: str | None = None) -> str:
    return picture_published(org.m, area or org.a1)


def alert_subject(org: Org) -> str:
    return alert_raised(org.m, org.a1)


class SSE:
    """Reads SSE messages (dicts of field -> value; comments under ':') from a streaming response."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next(self, timeout: float = 10.0) -> dict[str, str]:
        msg: dict[str, str] = {}
        async with asyncio.timeout(timeout):
            async for line in self.lines:
                if line == "":
                    if msg:
                        return msg
                    continue
                field, _, value = line.partition(":")
                msg[field or ":"] = value.removeprefix(" ")
        raise AssertionError("stream ended")

    async def events(self, n: int, timeout: float = 10.0) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        while len(out) < n:
            msg = await self.next(timeout)
            if "id" in msg:
                out.append(msg)
        return out


@asynccontextmanager
async def stream(base: str, token: str, params: dict[str, str] | None = None,
                 **headers: str) -> AsyncIterator[tuple[httpx.Response, SSE]]:
    """``GET /v1/stream`` as ``token``, open until the block ends."""
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(10, read=30)) as http, http.stream(
            "GET", "/v1/stream", params=params, headers={"Authorization": f"Bearer {token}", **headers}) as r:
        yield r, SSE(r)


def updated_event(org: Org, n: int, area: str | None = None, *, period: str = "2026-W48") -> Any:
    """An open picture of ``area`` (default a1) with one missing reporter."""
    area = area or org.a1
    pic = picture_event(org, area, period=period).data.picture.model_copy(update={
        "status": "open", "version": 0,
        "completeness": Completeness(expected=2, received=1, missing_reporters=["anna"])})
    return new_event(type="se.est.picture.updated", source="/est/aggregator", data=PictureUpdated(picture=pic),
                     subject=area, id=f"picture-updated:{area}:{period}:{n}")


# --- a realistic organisation: ids that differ from names, as an organisation file has them ---------------

REAL_PERIOD = "2026-W49"


def realistic_org() -> OrgSnapshot:
    """Växjö with two areas, a property company, the municipality and the police: a key function (lena), two
    property-company reporters (bo, anna), a police officer (kim), social services (sara) and an admin (ada)."""
    m = "vaxjo"
    people = [
        Person(id="lena", name="Lena Lind", actor="vaxjo-kommun", email="lena.lind@vaxjo.se",
               roles=["key_function"], areas=["araby", "teleborg"], municipalities=[m]),
        Person(id="bo", name="Bo Berg", actor="vaxjohem", email="bo.berg@vaxjohem.se", roles=["reporter"],
               areas=["araby"], municipalities=[m]),
        Person(id="anna", name="Anna Andersson", actor="vaxjohem", email="anna.andersson@vaxjohem.se",
               roles=["reporter"], areas=["araby"], municipalities=[m]),
        Person(id="kim", name="Kim Karlsson", actor="polisen-kronoberg", email="kim.karlsson@polisen.se",
               roles=["police"], areas=["araby"], municipalities=[m]),
        Person(id="sara", name="Sara Svensson", actor="vaxjo-kommun", email="sara.svensson@vaxjo.se",
               roles=["social_services"], areas=["araby"], municipalities=[m]),
        Person(id="ada", name="Ada Admin", actor="vaxjo-kommun", email="ada@vaxjo.se", roles=["admin"],
               areas=["araby", "teleborg"], municipalities=[m]),
    ]
    return OrgSnapshot(
        version=1,
        municipalities={m: Municipality(id=m, name="Växjö kommun", area_ids=["araby", "teleborg"])},
        areas={"araby": Area(id="araby", name="Araby", municipality_id=m, places=["Garagen", "Centrum"]),
               "teleborg": Area(id="teleborg", name="Teleborg", municipality_id=m, places=["Skolgården"])},
        actors={"vaxjohem": Actor(id="vaxjohem", name="Växjöhem AB", kind="property_company"),
                "vaxjo-kommun": Actor(id="vaxjo-kommun", name="Växjö kommun", kind="municipality"),
                "polisen-kronoberg": Actor(id="polisen-kronoberg", name="Polisen Kronoberg", kind="police")},
        people={p.id: p for p in people},
    )


def realistic_picture(*, version: int = 1, revision: bool = False, changes: list[str] | None = None,
                      event_id: str | None = None) -> CloudEvent[Any]:
    """A published picture of Araby with every trend and flag, a level item, who has not reported, notes of two
    items and a Kronoberg block as the aggregator sends it (few interventions, so hidden)."""
    pic = PictureData(
        municipality_id="vaxjo", area_id="araby", area_name="Araby", period=REAL_PERIOD, status="published",
        version=version, reports=3,
        items={
            "klotter": ItemSummary(item="klotter", answer="level", label_sv="Klotter", label_en="Graffiti", value=2,
                                   reports=2, places={"Garagen": 2}, previous=1, trend="up", flag="rising"),
            "skadegorelse": ItemSummary(item="skadegorelse", answer="count", label_sv="Skadegörelse",
                                        label_en="Vandalism / criminal damage", value=4, reports=2, previous=4,
                                        trend="flat", flag="high"),
            "brand": ItemSummary(item="brand", answer="count", label_sv="Anlagd brand (bil, container, papperskorg)",
                                 label_en="Deliberately set fire", value=1, reports=1, trend="new", flag="new"),
            "belysning": ItemSummary(item="belysning", answer="boolean", label_sv="Trasig eller bristande belysning",
                                     label_en="Broken or missing lighting", value=0, reports=0, previous=1,
                                     trend="down"),
        },
        completeness=Completeness(expected=5, received=3, on_time=3, rate=0.6,
                                  per_actor={"vaxjohem": {"expected": 4, "received": 2},
                                             "vaxjo-kommun": {"expected": 1, "received": 1}},
                                  missing_reporters=["anna", "bo"]),
        first_analysis={"sv": "Klottret ökar vid Garagen sedan 2026-W47.",
                        "en": "Graffiti is growing at Garagen since 2026-W47."},
        comments=[{"by": "lena", "actor_id": "vaxjo-kommun", "version": version, "at": "",
                   "text": "Fastighetsbolaget sanerar i veckan."}],
        notes=[NoteSummary(item="skadegorelse", label_sv="Skadegörelse", label_en="Vandalism / criminal damage",
                           text="Krossad ruta i porten", report_id="r2"),
               NoteSummary(item="klotter", label_sv="Klotter", label_en="Graffiti", place="Garagen",
                           place_name="Garagen", text="Ny tagg på garagelängan", report_id="r1"),
               NoteSummary(item="klotter", label_sv="Klotter", label_en="Graffiti", place="Centrum",
                           place_name="Centrum", text="Klotter på elskåpet", report_id="r3")],
        note_count=3,
        kronoberg={"interventions": "<3", "litres_total": "<3 interventions", "share_under_18": "<3 interventions",
                   "guardian_contacted": "<3", "direct_forfeiture": 0, "coarsened": True, "threshold": 3},
    )
    return new_event(type="se.est.picture.published", source="/est/aggregator",
                     data=PicturePublished(picture=pic, revision=revision, changes=changes or []), subject="araby",
                     id=event_id or f"picture:araby:{REAL_PERIOD}:v{version}")


async def insert_subscription(sessions: async_sessionmaker[AsyncSession], tables: Tables, *, owner_id: str,
                              channel: dict[str, str], events: list[str], language: str = "sv",
                              digest: str = "immediate", municipality_id: str = "vaxjo",
                              area_ids: list[str] | None = None) -> str:
    """A subscription of the realistic organisation written straight to the database; returns its id."""
    sub_id = str(uuid.uuid4())
    async with transaction(sessions) as s:
        await db.insert_subscription(s, tables, {
            "id": sub_id, "owner_id": owner_id, "name": "Lägesbilder Araby", "municipality_id": municipality_id,
            "area_ids": area_ids or ["araby"], "events": events, "channel": channel,
            "channel_target": channel_target(channel), "digest": digest, "language": language,
            "min_severity": None, "source": "api", "declared_key": None})
    return sub_id


def read_email(raw: bytes) -> dict[str, str]:
    """An e-mail as its recipient reads it: the decoded subject, the plain text and the HTML as text (tags
    removed, entities decoded)."""
    msg = email.message_from_bytes(raw, policy=default)
    plain = msg.get_body(("plain",))
    rich = msg.get_body(("html",))
    assert plain is not None and rich is not None
    page = re.sub(r"<[^>]+>", " ", rich.get_content())
    return {"subject": str(msg["Subject"]), "text": plain.get_content(),
            "html": html.unescape(page)}


# --- a real SMTP server ----------------------------------------------------------------------------------------

class Collector:
    """aiosmtpd handler keeping every message it receives; addresses in ``busy`` are answered 451 (a mailbox
    that is temporarily unavailable: the notifier retries)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.busy: set[str] = set()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if address.lower() in self.busy:
            return "451 4.2.1 Mailbox temporarily unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"

    def to(self, address: str) -> list[Any]:
        """The messages that reached ``address``, parsed as its recipient's mail program reads them."""
        return [email.message_from_bytes(raw, policy=default) for _f, rcpts, raw in self.messages if address in rcpts]


@contextmanager
def smtp_server() -> Iterator[tuple[Collector, str]]:
    """A real SMTP server (aiosmtpd) on a free loopback port: its collector and its ``smtp://`` URL."""
    handler = Collector()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, f"smtp://127.0.0.1:{port}"
    finally:
        controller.stop()
