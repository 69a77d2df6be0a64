"""Role × endpoint matrix of the aggregator, notifier and analysis: 401 without a valid token, 403 outside the
caller's role, area or municipality, and an answer that is not 401/403 inside them.

The three services run in-process on a NATS server of this module's own and SQLite in a temporary folder;
the organisation (municipality M with areas A and B, municipality N with area C) is applied directly.
A second test checks that every documented route (``/openapi.json``) has rows here, so a new route
without a matrix row fails.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from est_aggregator.app import Settings as AggregatorSettings
from est_aggregator.app import create_app as aggregator_app
from est_analysis.app import Settings as AnalysisSettings
from est_analysis.app import create_app as analysis_app
from est_notifier.app import Settings as NotifierSettings
from est_notifier.app import create_app as notifier_app
from est_shared.natsserver import NatsServer
from est_shared.org import Actor, Area, Municipality, OrgSnapshot, Person, hash_token
from est_shared.testing import serve

SERVICES = ("aggregator", "notifier", "analysis")
OPS = {"/healthz", "/readyz", "/metrics", "/asyncapi.json"}  # open ops routes and machine docs
CALLERS = ["reporter", "key_function", "key_function_other", "police", "social_services", "beredningsgrupp",
           "styrgrupp", "admin", "no token", "bad token"]
PEOPLE = [c for c in CALLERS if c not in ("no token", "bad token")]
INSIDE_CODES = {200, 201, 202, 204, 404, 409, 422}
"""Answers that show the caller got past authorisation (the request itself may still be refused)."""

TAG = uuid.uuid4().hex[:6]
IDS: dict[str, str] = {
    "M": f"sec{TAG}m", "N": f"sec{TAG}n", "A": f"sec{TAG}a", "B": f"sec{TAG}b", "C": f"sec{TAG}c",
    "P": "2026-W40", "FROM": "2026-W30", "T": "2026-T2", "XLSX": "xlsx",
}


def token(who: str) -> str:
    return f"tok-{who}-{TAG}"


def headers_for(who: str) -> dict[str, str]:
    if who == "no token":
        return {}
    if who == "bad token":
        return {"Authorization": "Bearer not-a-token"}
    return {"Authorization": f"Bearer {token(who)}"}


def make_org(version: int) -> OrgSnapshot:
    """M (areas A, B) and N (area C); everyone works in all of M except the reporter (A) and the other key
    function (N); the admin has no areas."""
    m, n, a, b, c = (IDS[k] for k in "MNABC")
    inside_m = {"areas": [a, b], "municipalities": [m]}
    spec: dict[str, tuple[str, list[str], dict[str, list[str]]]] = {
        "reporter": ("hem", ["reporter"], {"areas": [a], "municipalities": [m]}),
        "key_function": ("kommun", ["key_function"], inside_m),
        "key_function_other": ("kommun_n", ["key_function"], {"areas": [c], "municipalities": [n]}),
        "police": ("polis", ["police"], inside_m),
        "social_services": ("soc", ["social_services"], inside_m),
        "beredningsgrupp": ("kommun", ["beredningsgrupp"], inside_m),
        "styrgrupp": ("kommun", ["styrgrupp"], inside_m),
        "admin": ("kommun", ["admin"], {"areas": [], "municipalities": []}),
    }
    people = {who: Person(id=f"{who}-{TAG}", name=who.replace("_", " ").title(), actor=actor, roles=roles,  # type: ignore[arg-type]
                          email=f"{who.replace('_', '.')}@example.org", token_sha256=hash_token(token(who)), **where)
              for who, (actor, roles, where) in spec.items()}
    return OrgSnapshot(
        version=version,
        municipalities={m: Municipality(id=m, name="Säkerhetskommun", area_ids=[a, b]),
                        n: Municipality(id=n, name="Grannkommun", area_ids=[c])},
        areas={a: Area(id=a, name="Område A", municipality_id=m, places=["centrum"]),
               b: Area(id=b, name="Område B", municipality_id=m, places=["torget"]),
               c: Area(id=c, name="Område C", municipality_id=n, places=["parken"])},
        actors={"hem": Actor(id="hem", name="Hem AB", kind="property_company"),
                "kommun": Actor(id="kommun", name="Kommunen", kind="municipality"),
                "kommun_n": Actor(id="kommun_n", name="Grannkommunen", kind="municipality"),
                "polis": Actor(id="polis", name="Polisen", kind="police"),
                "soc": Actor(id="soc", name="Socialtjänsten", kind="social_services")},
        people=people)


# ---------------------------------------------------------------------------------------------------------------
# The matrix: one row per (route, situation); ``allow`` = the callers that must get past authorisation.

ALL = tuple(PEOPLE)
IN_M = ("reporter", "key_function", "police", "social_services", "beredningsgrupp", "styrgrupp", "admin")
IN_B = ("key_function", "police", "social_services", "beredningsgrupp", "styrgrupp", "admin")
IN_N = ("key_function_other", "admin")
ANALYSTS = ("key_function", "beredningsgrupp", "styrgrupp", "admin")
OWNER = ("key_function", "admin")  # the notifier's setup subscription belongs to the key function
WEBHOOKS = ("key_function", "police", "social_services", "admin")  # est_notifier.domain.WEBHOOK_ROLES, in M


@dataclass(frozen=True)
class Row:
    """One situation of one route."""

    service: str
    method: str
    template: str
    label: str
    allow: tuple[str, ...]
    path: dict[str, str] = field(default_factory=dict)  # template name -> key of IDS or of the world's refs
    query: dict[str, str] = field(default_factory=dict)
    body: str | None = None  # name of a body builder in BODIES
    extra_ok: frozenset[int] = frozenset()
    bugs: dict[str, str] = field(default_factory=dict)  # caller -> evidence (expected 403, service lets through)

    @property
    def route(self) -> tuple[str, str]:
        return self.method, self.template


PIC = "/v1/areas/{area_id}/pictures/{period}"
SERIES = "/v1/areas/{area_id}/pictures"
MUNI_PIC = "/v1/municipalities/{municipality_id}/pictures/{period}"
MUNI_KRONOBERG = "/v1/municipalities/{municipality_id}/kronoberg/{period}"
MUNI_KRONOBERG_RANGE = "/v1/municipalities/{municipality_id}/kronoberg"
PUBLISH = "/v1/areas/{area_id}/pictures/{period}/publish"
ALERTS = "/v1/areas/{area_id}/alerts"
REPORTS = "/v1/areas/{area_id}/reports/{period}"
SUBS = "/v1/subscriptions"
SUB = "/v1/subscriptions/{sub_id}"
SUB_ADMIN = "/v1/admin/subscriptions/{sub_id}"
ANALYSES = "/v1/analyses"
ANALYSIS = "/v1/analyses/{analysis_id}"
MEASURES = "/v1/measures"
MEASURE = "/v1/measures/{measure_id}"

READ_B_MEASURES = ("GET /v1/measures checks only the municipality of the area (analysis api.py list_measures/"
                   "get_measure → _require_municipality), so a reporter assigned to area A alone reads the measures "
                   "of area B: 200 where CONTRACT.md says '403 outside one's role or areas'.")

ROWS: list[Row] = [
    # aggregator
    Row("aggregator", "GET", PIC, "picture of A", IN_M, {"area_id": "A", "period": "P"}),
    Row("aggregator", "GET", PIC, "picture of B (reporter not assigned)", IN_B, {"area_id": "B", "period": "P"}),
    Row("aggregator", "GET", PIC, "picture of C (other municipality)", IN_N, {"area_id": "C", "period": "P"}),
    Row("aggregator", "GET", PIC + "/report.html", "printable picture of A", IN_M, {"area_id": "A", "period": "P"}),
    Row("aggregator", "GET", PIC + "/report.pdf", "picture PDF of A", IN_M, {"area_id": "A", "period": "P"},
        extra_ok=frozenset({501, 503})),
    Row("aggregator", "GET", SERIES, "series of A", IN_M, {"area_id": "A"}, {"from": "FROM", "to": "P"}),
    Row("aggregator", "GET", SERIES, "series of B", IN_B, {"area_id": "B"}, {"from": "FROM", "to": "P"}),
    Row("aggregator", "GET", SERIES, "series of C", IN_N, {"area_id": "C"}, {"from": "FROM", "to": "P"}),
    Row("aggregator", "GET", MUNI_PIC, "municipality picture of M", IN_M, {"municipality_id": "M", "period": "P"}),
    Row("aggregator", "GET", MUNI_PIC, "municipality picture of N", IN_N, {"municipality_id": "N", "period": "P"}),
    Row("aggregator", "GET", MUNI_PIC + "/completeness", "completeness per actor of M", IN_M,
        {"municipality_id": "M", "period": "P"}),
    Row("aggregator", "GET", MUNI_PIC + "/completeness", "completeness per actor of N", IN_N,
        {"municipality_id": "N", "period": "P"}),
    Row("aggregator", "GET", MUNI_KRONOBERG, "Kronoberg figures of M", IN_M, {"municipality_id": "M", "period": "P"}),
    Row("aggregator", "GET", MUNI_KRONOBERG, "Kronoberg figures of N", IN_N, {"municipality_id": "N", "period": "P"}),
    Row("aggregator", "GET", MUNI_KRONOBERG, "Kronoberg figures of a tertial of M", IN_M,
        {"municipality_id": "M", "period": "T"}),
    Row("aggregator", "GET", MUNI_KRONOBERG, "Kronoberg figures of a tertial of N", IN_N,
        {"municipality_id": "N", "period": "T"}),
    Row("aggregator", "GET", MUNI_KRONOBERG_RANGE, "Kronoberg figures of weeks of M", IN_M,
        {"municipality_id": "M"}, {"from": "FROM", "to": "P"}),
    Row("aggregator", "GET", MUNI_KRONOBERG_RANGE, "Kronoberg figures of weeks of N", IN_N,
        {"municipality_id": "N"}, {"from": "FROM", "to": "P"}),
    Row("aggregator", "POST", PUBLISH, "publish A", ("key_function", "admin"), {"area_id": "A", "period": "P"},
        body="publish"),
    Row("aggregator", "POST", PUBLISH, "publish C", IN_N, {"area_id": "C", "period": "P"}, body="publish"),
    Row("aggregator", "GET", REPORTS, "reports of A (those who read notes: key functions, police, admins)",
        ("key_function", "police", "admin"), {"area_id": "A", "period": "P"}),
    Row("aggregator", "GET", REPORTS, "reports of A as a spreadsheet", ("key_function", "police", "admin"),
        {"area_id": "A", "period": "P"}, {"format": "XLSX"}),
    Row("aggregator", "GET", REPORTS, "reports of C (other municipality)", IN_N, {"area_id": "C", "period": "P"}),
    Row("aggregator", "GET", ALERTS, "alerts of A", IN_M, {"area_id": "A"}),
    Row("aggregator", "GET", ALERTS, "alerts of B", IN_B, {"area_id": "B"}),
    Row("aggregator", "GET", ALERTS, "alerts of C", IN_N, {"area_id": "C"}),
    # notifier
    Row("notifier", "POST", SUBS, "subscribe to A by webhook (not reporters, beredningsgrupp, styrgrupp)",
        WEBHOOKS, body="sub_a"),
    Row("notifier", "POST", SUBS, "subscribe to A by e-mail", IN_M, body="sub_a_email"),
    Row("notifier", "POST", SUBS, "subscribe to B by webhook", WEBHOOKS, body="sub_b"),
    Row("notifier", "POST", SUBS, "subscribe to B by e-mail", IN_B, body="sub_b_email"),
    Row("notifier", "POST", SUBS, "subscribe to C", IN_N, body="sub_c"),
    Row("notifier", "POST", SUBS, "subscribe to personal data (social services only, not even admin)",
        ("social_services",), body="sub_personal"),
    Row("notifier", "POST", SUBS, "subscribe to analyses of M (the roles that may read them)", ANALYSTS,
        body="sub_analyses"),
    Row("notifier", "GET", SUBS, "own subscriptions", ALL),
    Row("notifier", "GET", SUB, "the key function's subscription", OWNER, {"sub_id": "sub"}),
    Row("notifier", "PATCH", SUB, "pause the key function's subscription", OWNER, {"sub_id": "sub"}, body="pause"),
    Row("notifier", "DELETE", SUB, "delete a fresh subscription of the key function", OWNER, {"sub_id": "fresh_sub"}),
    Row("notifier", "GET", "/v1/deliveries", "own deliveries", ALL),
    Row("notifier", "GET", "/v1/deliveries", "deliveries of the key function's subscription", OWNER,
        query={"subscription_id": "sub"}),
    Row("notifier", "GET", "/v1/admin/personal-data-deliveries", "personal-data log", ("admin",)),
    Row("notifier", "GET", "/v1/social-services/notifications", "forfeiture notifications of one's municipality",
        ("social_services",)),
    Row("notifier", "POST", SUB_ADMIN + "/handover", "hand over a fresh subscription of the key function (admins "
        "only: not its owner, nor any key function)", ("admin",), {"sub_id": "fresh_sub"}, body="handover"),
    Row("notifier", "POST", SUB_ADMIN + "/restore", "restore the key function's subscription (admins; live: 409)",
        ("admin",), {"sub_id": "sub"}, body="restore"),
    Row("notifier", "GET", "/v1/stream", "live stream", ALL),
    # analysis
    Row("analysis", "POST", ANALYSES, "compile for M", ANALYSTS, body="analysis_m"),
    Row("analysis", "POST", ANALYSES, "compile for N", IN_N, body="analysis_n"),
    Row("analysis", "GET", ANALYSES, "list of M", ANALYSTS, query={"municipality_id": "M"}),
    Row("analysis", "GET", ANALYSES, "list of N", IN_N, query={"municipality_id": "N"}),
    Row("analysis", "GET", ANALYSIS, "analysis of M", ANALYSTS, {"analysis_id": "analysis"}),
    Row("analysis", "GET", ANALYSIS, "analysis of N", IN_N, {"analysis_id": "analysis_n"}),
    Row("analysis", "GET", ANALYSIS + "/report.html", "report of M", ANALYSTS, {"analysis_id": "analysis"}),
    Row("analysis", "GET", ANALYSIS + "/report.html", "report of N", IN_N, {"analysis_id": "analysis_n"}),
    Row("analysis", "GET", ANALYSIS + "/report.pdf", "PDF of M (no browser: 501 inside)", ANALYSTS,
        {"analysis_id": "analysis"}, extra_ok=frozenset({501})),
    Row("analysis", "GET", ANALYSIS + "/report.pdf", "PDF of N (no browser: 501 inside)", IN_N,
        {"analysis_id": "analysis_n"}, extra_ok=frozenset({501})),
    Row("analysis", "GET", ANALYSIS + "/report.docx", "DOCX of M", ANALYSTS, {"analysis_id": "analysis"}),
    Row("analysis", "POST", MEASURES, "measure in A", ("styrgrupp", "admin"), body="measure_a"),
    Row("analysis", "POST", MEASURES, "measure in C", ("admin",), body="measure_c"),
    Row("analysis", "PATCH", MEASURE, "re-decide a measure in A", ("styrgrupp", "admin"),
        {"measure_id": "measure_a"}, body="redecide"),
    Row("analysis", "PATCH", MEASURE, "re-decide a measure in C", ("admin",), {"measure_id": "measure_c"},
        body="redecide"),
    Row("analysis", "GET", MEASURES, "measures of the caller's municipalities", ALL),
    Row("analysis", "GET", MEASURES, "measures of A", IN_M, query={"area_id": "A"}),
    Row("analysis", "GET", MEASURES, "measures of B", IN_B, query={"area_id": "B"}),
    Row("analysis", "GET", MEASURES, "measures of C", IN_N, query={"area_id": "C"}),
    Row("analysis", "GET", MEASURES, "measures of municipality M", IN_M, query={"municipality_id": "M"}),
    Row("analysis", "GET", MEASURES, "measures of municipality N", IN_N, query={"municipality_id": "N"}),
    Row("analysis", "GET", MEASURE, "a measure in A", IN_M, {"measure_id": "measure_a"}),
    Row("analysis", "GET", MEASURE, "a measure in B", IN_B, {"measure_id": "measure_b"}),
    Row("analysis", "GET", MEASURE, "a measure in C", IN_N, {"measure_id": "measure_c"}),
    Row("analysis", "GET", MEASURE + "/effect", "effect of a measure in A", IN_M, {"measure_id": "measure_a"}),
    Row("analysis", "GET", MEASURE + "/effect", "effect of a measure in B", IN_B, {"measure_id": "measure_b"}),
    Row("analysis", "GET", MEASURE + "/effect", "effect of a measure in C", IN_N, {"measure_id": "measure_c"}),
    Row("analysis", "GET", "/v1/actors", "actors of M", ANALYSTS, query={"municipality_id": "M"}),
    Row("analysis", "GET", "/v1/actors", "actors of N", IN_N, query={"municipality_id": "N"}),
]


def _webhook() -> dict[str, str]:
    return {"type": "webhook", "url": "https://example.org/est-hook", "secret": "s3cret"}


def _sub(muni: str, area: str, events: list[str] | None = None, channel: dict[str, str] | None = None
         ) -> dict[str, Any]:
    return {"name": f"matrix {uuid.uuid4().hex[:6]}", "scope": {"municipality_id": IDS[muni], "area_ids": [IDS[area]]},
            "events": events or ["picture.published"], "channel": channel or _webhook()}


def _measure(area: str) -> dict[str, Any]:
    return {"title": "Bättre belysning", "area_id": IDS[area], "items": ["klotter"], "responsible_actor": "kommun",
            "decided_by": "Styrgruppen 2026-05-01", "start": "2026-05-04"}


BODIES: dict[str, Any] = {
    "publish": lambda: {"comment": "matrix"},
    "sub_a": lambda: _sub("M", "A"),
    "sub_b": lambda: _sub("M", "B"),
    "sub_a_email": lambda: _sub("M", "A", channel={"type": "email", "to": "matrix@example.org"}),
    "sub_b_email": lambda: _sub("M", "B", channel={"type": "email", "to": "matrix@example.org"}),
    "sub_c": lambda: _sub("N", "C"),
    "sub_personal": lambda: _sub("M", "A", ["forfeiture.notification_due"]),
    "sub_analyses": lambda: _sub("M", "A", ["analysis.published"], channel={"type": "email", "to": "m@example.org"}),
    "pause": lambda: {"paused": True},
    "handover": lambda: {"to": f"police-{TAG}"},
    "restore": lambda: {},
    "analysis_m": lambda: {"municipality_id": IDS["M"], "period": IDS["T"]},
    "analysis_n": lambda: {"municipality_id": IDS["N"], "period": IDS["T"]},
    "measure_a": lambda: _measure("A"),
    "measure_c": lambda: _measure("C"),
    "redecide": lambda: {"status": "active", "reason": "uppföljning i styrgruppen"},
}


def _cases() -> Iterator[Any]:
    for i, row in enumerate(ROWS):
        for who in CALLERS:
            marks = [pytest.mark.xfail(reason=row.bugs[who], strict=False)] if who in row.bugs else []
            yield pytest.param(i, who, id=f"{row.service}:{row.method} {row.template} [{row.label}] as {who}",
                               marks=marks)


# ---------------------------------------------------------------------------------------------------------------
# Running services


@dataclass
class World:
    clients: dict[str, httpx.AsyncClient]
    apps: dict[str, Any]
    refs: dict[str, str]

    def resolve(self, key: str) -> str:
        return self.refs.get(key) or IDS[key]


@pytest.fixture(scope="module")
def matrix_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A NATS server of this module's own."""
    server = NatsServer(tmp_path_factory.mktemp("nats-matrix"), log_file=None).start()
    yield server
    server.kill()


async def _ok(resp: httpx.Response, *codes: int) -> dict[str, Any]:
    assert resp.status_code in codes, f"setup failed: {resp.request.method} {resp.request.url}: {resp.text}"
    return resp.json() if resp.content else {}


@pytest_asyncio.fixture(scope="module")
async def world(matrix_nats: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    """The three services with the organisation applied and the resources the rows refer to."""
    data: Path = tmp_path_factory.mktemp("matrix-data")
    common: dict[str, Any] = {"nats_url": matrix_nats.url, "log_level": "WARNING"}
    apps = {
        "aggregator": aggregator_app(AggregatorSettings(**common, data_dir=data / "aggregator",
                                                         auto_publish_interval=0, outbox_interval=0.1)),
        "notifier": notifier_app(NotifierSettings(**common, data_dir=data / "notifier", reminders_enabled=False)),
        "analysis": analysis_app(AnalysisSettings(**common, data_dir=data / "analysis", auto_compile=False,
                                                  browser="none", outbox_interval_seconds=0.1)),
    }
    org = make_org(int(time.time() * 1000))
    async with AsyncExitStack() as stack:
        clients: dict[str, httpx.AsyncClient] = {}
        for name, app in apps.items():
            base = await stack.enter_async_context(serve(app))
            clients[name] = await stack.enter_async_context(httpx.AsyncClient(base_url=base, timeout=20))
            await app.state.runtime.apply_org(org)
        w = World(clients=clients, apps=apps, refs={})
        kf, admin = headers_for("key_function"), headers_for("admin")
        sub = await _ok(await clients["notifier"].post(SUBS, json=_sub("M", "A"), headers=kf), 201)
        w.refs["sub"] = sub["id"]
        an = clients["analysis"]
        for key, muni in (("analysis", "M"), ("analysis_n", "N")):
            body = {"municipality_id": IDS[muni], "period": IDS["T"]}
            w.refs[key] = (await _ok(await an.post(ANALYSES, json=body, headers=admin), 201))["id"]
        for key, area in (("measure_a", "A"), ("measure_b", "B"), ("measure_c", "C")):
            w.refs[key] = (await _ok(await an.post(MEASURES, json=_measure(area), headers=admin), 201))["id"]
        yield w


async def call(w: World, row: Row, who: str) -> httpx.Response:
    """Make the row's request as ``who``."""
    client = w.clients[row.service]
    if row.path.get("sub_id") == "fresh_sub":
        made = await _ok(await client.post(SUBS, json=_sub("M", "A"), headers=headers_for("key_function")), 201)
        w.refs["fresh_sub"] = made["id"]
    url = row.template.format(**{k: w.resolve(v) for k, v in row.path.items()})
    params = {k: w.resolve(v) for k, v in row.query.items()}
    body = BODIES[row.body]() if row.body else None
    if row.template == "/v1/stream":
        async with client.stream("GET", url, params=params, headers=headers_for(who)) as resp:
            if resp.status_code >= 400:
                await resp.aread()
            return resp
    return await client.request(row.method, url, params=params, json=body, headers=headers_for(who))


@pytest.mark.parametrize(("index", "who"), list(_cases()))
async def test_role_matrix_of_the_services(world: World, index: int, who: str) -> None:
    row = ROWS[index]
    resp = await call(world, row, who)
    got = resp.status_code
    if who in ("no token", "bad token"):
        assert got == 401, f"{who}: {got} {resp.text}"
        assert "WWW-Authenticate" in resp.headers
    elif who in row.allow:
        assert got in INSIDE_CODES | row.extra_ok, f"{who} inside: {got} {resp.text}"
    else:
        assert got == 403, f"{who} outside: {got} {resp.text[:300]}"
    if got >= 400:
        assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers["content-type"]
    if got == 200 and who in PEOPLE and who != "admin":
        check_list_is_scoped(row, who, resp)


def check_list_is_scoped(row: Row, who: str, resp: httpx.Response) -> None:
    """Lists answer only what the caller may see: own subscriptions, measures of own municipalities."""
    person = f"{who}-{TAG}"
    if (row.method, row.template) == ("GET", SUBS):
        assert all(s["owner_id"] == person for s in resp.json()), resp.text[:300]
    if (row.method, row.template) == ("GET", MEASURES):
        mine = {IDS["N"]} if who == "key_function_other" else {IDS["M"]}
        assert {m["municipality_id"] for m in resp.json()} <= mine, resp.text[:300]


@pytest.mark.parametrize("service", SERVICES)
async def test_every_documented_route_has_matrix_rows(world: World, service: str) -> None:
    client = world.clients[service]
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "openapi.json" in docs.text
    spec = (await client.get("/openapi.json")).json()
    documented = {(method.upper(), path) for path, ops in spec["paths"].items() if path not in OPS
                  for method in ops if method in ("get", "post", "put", "patch", "delete")}
    covered = {row.route for row in ROWS if row.service == service}
    assert documented == covered, (f"routes without matrix rows: {sorted(documented - covered)}; "
                                   f"rows for undocumented routes: {sorted(covered - documented)}")


def test_every_row_names_every_caller_once() -> None:
    for row in ROWS:
        assert set(row.allow) <= set(PEOPLE), row
        assert set(row.bugs) <= set(PEOPLE) - set(row.allow), row


async def test_a_person_removed_from_the_organisation_is_refused_everywhere(world: World) -> None:
    """A newer organisation without the key function revokes its token in every service; putting it back
    restores access (runs after the matrix: it changes the organisation the module shares)."""
    base = int(time.time() * 1000) + 10_000
    full = make_org(base)
    without = full.model_copy(update={"version": base, "people": {k: v for k, v in full.people.items()
                                                                  if k != "key_function"}})
    probes = {"aggregator": f"/v1/areas/{IDS['A']}/alerts", "notifier": SUBS,
              "analysis": f"{ANALYSES}?municipality_id={IDS['M']}"}
    for app in world.apps.values():
        await app.state.runtime.apply_org(without)
    for name, path in probes.items():
        r = await world.clients[name].get(path, headers=headers_for("key_function"))
        assert r.status_code == 401, (name, r.status_code, r.text)
    for app in world.apps.values():
        await app.state.runtime.apply_org(make_org(base + 1))
    for name, path in probes.items():
        r = await world.clients[name].get(path, headers=headers_for("key_function"))
        assert r.status_code == 200, (name, r.status_code, r.text)


# ---------------------------------------------------------------------------------------------------------------
# The web front end's /session routes: signing in is the same for every role (the intake says who a token is);
# what a session may then do is its person's roles, as with the token itself.

SESSION_CALLERS = ["reporter", "key_function", "police", "social_services", "admin", "no token", "bad token"]
SESSION_PERSON = {"reporter": "anna", "key_function": "bo", "police": "petra", "social_services": "sara",
                  "admin": "admin"}
# (method, route) -> expected status per caller in SESSION_CALLERS order, each on its own (fresh) client
SESSION_EXPECTED: dict[tuple[str, str], list[int]] = {
    ("POST", "/session"): [200, 200, 200, 200, 200, 422, 401],
    ("GET", "/session"): [200, 200, 200, 200, 200, 401, 401],
    ("GET", "/session/methods"): [200] * 7,
    ("GET", "/session/demo"): [404] * 7,  # demo sign-in off
    ("POST", "/session/demo"): [404] * 7,
    ("GET", "/session/oidc"): [404] * 7,  # no OpenID provider configured
    ("GET", "/session/oidc/callback"): [404] * 7,
    ("POST", "/session/sign-out"): [403, 403, 403, 403, 403, 204, 204],  # a session's sign-out needs its CSRF token
}
# through the gateway on the session: the person's own roles, nothing more
SESSION_GATEWAY: dict[str, list[int]] = {
    "/api/intake/v1/me": [200, 200, 200, 200, 200, 401, 401],
    "/api/intake/v1/admin/org": [403, 403, 403, 403, 200, 401, 401],
}


async def test_role_matrix_of_the_web_sessions(matrix_nats: NatsServer, tmp_path: Path) -> None:
    from est_intake.forfeitures.pii import generate_key
    from est_web.app import create_app as web_app
    from est_web.settings import WebSettings

    from tests.intake.support import running as running_intake
    from tests.intake.support import settings_for as intake_settings
    from tests.security.support import TOKENS, forfeiture_org

    (tmp_path / "intake").mkdir()
    settings = intake_settings(tmp_path / "intake", matrix_nats.url, forfeiture_org(), pii_key=generate_key())
    async with running_intake(settings) as (intake, _app):
        web = web_app(WebSettings(intake_url=str(intake.base_url).rstrip("/"), log_level="WARNING",
                                  data_dir=tmp_path / "web", sign_in_max_failures=1000))
        async with serve(web) as base:
            spec = (await httpx.AsyncClient(base_url=base).get("/openapi.json")).json()
            documented = {(m.upper(), p) for p, ops in spec["paths"].items() if p.startswith("/session")
                          for m in ops if m in ("get", "post", "put", "patch", "delete")}
            assert documented == set(SESSION_EXPECTED), sorted(documented ^ set(SESSION_EXPECTED))
            got: dict[Any, list[int]] = {k: [] for k in [*SESSION_EXPECTED, *SESSION_GATEWAY]}
            for who in SESSION_CALLERS:
                token = TOKENS[SESSION_PERSON[who]] if who in SESSION_PERSON else "not-a-token"
                async with httpx.AsyncClient(base_url=base, timeout=20) as c:
                    r = await c.post("/session", json={"token": token} if who != "no token" else {})
                    got[("POST", "/session")].append(r.status_code)
                    r = await c.get("/session")
                    got[("GET", "/session")].append(r.status_code)
                    if r.status_code == 200:
                        assert r.json()["me"]["id"] == SESSION_PERSON[who], r.text
                    for path in SESSION_GATEWAY:
                        got[path].append((await c.get(path)).status_code)
                    got[("GET", "/session/methods")].append((await c.get("/session/methods")).status_code)
                    got[("GET", "/session/demo")].append((await c.get("/session/demo")).status_code)
                    r = await c.post("/session/demo", json={"person_id": SESSION_PERSON.get(who, "anna")})
                    got[("POST", "/session/demo")].append(r.status_code)
                    got[("GET", "/session/oidc")].append((await c.get("/session/oidc")).status_code)
                    r = await c.get("/session/oidc/callback", params={"code": "x", "state": "y"})
                    got[("GET", "/session/oidc/callback")].append(r.status_code)
                    r = await c.post("/session/sign-out")
                    got[("POST", "/session/sign-out")].append(r.status_code)
                    if who in SESSION_PERSON:  # with the session's CSRF token it ends, and with it the access
                        csrf = (await c.get("/session")).json()["csrf_token"]
                        assert (await c.post("/session/sign-out", headers={"X-CSRF-Token": csrf})).status_code == 204
                        assert (await c.get("/session")).status_code == 401
                        assert (await c.get("/api/intake/v1/me")).status_code == 401
            expected = {**SESSION_EXPECTED, **SESSION_GATEWAY}
            assert got == expected, "\n".join(f"{k}: got {got[k]} expected {v}" for k, v in expected.items()
                                              if got[k] != v)
