"""Helpers for the analysis service tests: an organisation, picture events, auth headers, polling."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from est_shared.clock import SettableClock
from est_shared.events import CloudEvent, Completeness, ItemSummary, PictureData, PicturePublished, new_event
from est_shared.org import Actor, Area, Municipality, OrgSnapshot, Person, hash_token
from est_shared.periods import Period

LABELS = {"klotter": ("Klotter", "Graffiti"), "brand": ("Anlagd brand", "Deliberately set fire"),
          "samling": ("Samling av personer", "Gatherings causing insecurity")}


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def org(m: str, areas: list[str], *, version: int = 1, analysis_period: str = "tertial",
        cadence: str = "weekly") -> OrgSnapshot:
    """A municipality with areas and people: styr (styrgrupp), kf (key function), rep (reporter),
    outsider (styrgrupp elsewhere), admin. Tokens are ``<person>-<municipality>``."""
    def person(pid: str, roles: list[str], *, munis: list[str], area_ids: list[str]) -> Person:
        return Person(id=f"{pid}-{m}", name=pid.title(), actor=f"actor-{m}", roles=roles,  # type: ignore[arg-type]
                      areas=area_ids, municipalities=munis, token_sha256=hash_token(f"{pid}-{m}"))

    people = [person("styr", ["styrgrupp"], munis=[m], area_ids=areas),
              person("kf", ["key_function"], munis=[m], area_ids=areas),
              person("rep", ["reporter"], munis=[m], area_ids=areas),
              person("outsider", ["styrgrupp"], munis=[f"other-{m}"], area_ids=[]),
              person("admin", ["admin"], munis=[], area_ids=[])]
    return OrgSnapshot(
        version=version,
        municipalities={m: Municipality(id=m, name=f"Kommun {m}", analysis_period=analysis_period,  # type: ignore[arg-type]
                                        area_ids=areas)},
        areas={a: Area(id=a, name=f"Område {a}", municipality_id=m, cadence=cadence) for a in areas},  # type: ignore[arg-type]
        actors={f"actor-{m}": Actor(id=f"actor-{m}", name="Bostadsbolaget", kind="property_company")},
        people={p.id: p for p in people},
    )


def picture_event(m: str, a: str, period: str, items: dict[str, tuple[float, str | None]], *, version: int = 1,
                  expected: int = 3, received: int = 3) -> CloudEvent[PicturePublished]:
    """A se.est.picture.published event; items map code -> (value, flag)."""
    summaries = {code: ItemSummary(item=code, answer="level", label_sv=LABELS.get(code, (code, code))[0],
                                   label_en=LABELS.get(code, (code, code))[1], value=v, reports=1 if v else 0,
                                   flag=f)  # type: ignore[arg-type]
                 for code, (v, f) in items.items()}
    data = PicturePublished(picture=PictureData(
        municipality_id=m, area_id=a, area_name=f"Område {a}", period=period, status="published", version=version,
        reports=received, items=summaries,
        completeness=Completeness(expected=expected, received=received, on_time=received,
                                  rate=received / expected if expected else 0.0)), revision=version > 1)
    return new_event(type="se.est.picture.published", source="/test", data=data,
                     id=f"picture:{a}:{period}:v{version}", subject=a)


AFTER_T3_2026 = datetime(2027, 1, 10, 12, tzinfo=UTC)  # the whole tertial, week 53 included, has begun


def compile_after_t3(app: Any) -> None:
    """Let the service compile as after 2026-T3: a report names only weeks that have begun, and the
    scenarios here report every week of that tertial."""
    app.state.analysis.clock = SettableClock(AFTER_T3_2026)


def auth(person: str, m: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {person}-{m}"}



T3_2026 = [p.id for p in Period.parse("2026-T3").reporting_periods("weekly")]  # 2026-W36 … 2026-W53
PERSISTENT_WEEKS = T3_2026[4:16]  # 2026-W40 … 2026-W51: twelve weeks, all in Q4 and in T3
MEASURE_WEEK = "2026-W46"  # the measure in the second area starts on the Monday of this week


def acceptance_history(m: str, persistent: str, treated: str) -> list[CloudEvent[PicturePublished]]:
    """The issue's scenario over 2026-T3: ``persistent``'s klotter stays high for 12 weeks (W40–W51);
    ``treated``'s klotter is high until a measure starts in W46 and falls to 'enstaka' from then on."""
    events = []
    measure_start = Period.parse(MEASURE_WEEK)
    for week in T3_2026:
        p = Period.parse(week)
        high = week in PERSISTENT_WEEKS
        events.append(picture_event(m, persistent, week, {"klotter": (3, "high") if high else (1, None),
                                                          "samling": (1, None)}))
        before = p < measure_start
        events.append(picture_event(m, treated, week, {"klotter": (3, "high") if before else (1, None),
                                                       "samling": (1, None)}))
    return events


# --- a realistic municipality for the readable report (screenshots, browser tests) ---------------

REAL_AREAS = {"araby": "Araby", "dalbo": "Dalbo", "teleborg": "Teleborg", "oster": "Öster",
              "centrum": "Centrum", "sigfridslund": "Sigfridslund"}


def realistic_org(m: str) -> OrgSnapshot:
    """Växjö-like municipality with six areas, actors and the same test people as ``org``."""
    base = org(m, [f"{a}-{m}" for a in REAL_AREAS])
    areas = {f"{a}-{m}": Area(id=f"{a}-{m}", name=name, municipality_id=m, cadence="weekly")
             for a, name in REAL_AREAS.items()}
    actors = {f"actor-{m}": Actor(id=f"actor-{m}", name="Växjöhem AB", kind="property_company"),
              f"polis-{m}": Actor(id=f"polis-{m}", name="Lokalpolisområde Växjö", kind="police"),
              f"kommun-{m}": Actor(id=f"kommun-{m}", name="Växjö kommun, fritid", kind="municipality")}
    muni = Municipality(id=m, name="Växjö kommun", analysis_period="tertial", area_ids=list(areas))
    return base.model_copy(update={"municipalities": {m: muni}, "areas": areas, "actors": actors})


def realistic_history(m: str, seed: int = 7) -> list[CloudEvent[PicturePublished]]:
    """2026-T3 weekly pictures for the six areas: steady graffiti in Araby, littering that falls after a
    clean-up in Dalbo, rising nuisance driving in Teleborg, weekend drinking in Centrum, quiet elsewhere."""
    import random

    from est_shared.checklists import EST_STANDARD_1

    rnd = random.Random(seed)
    items = {i.code: i for i in EST_STANDARD_1.items}
    weeks = T3_2026
    out = []

    def level(base: float) -> int:
        return max(0, min(3, round(base + rnd.uniform(-0.6, 0.6))))

    for ai, (a, name) in enumerate(REAL_AREAS.items()):
        prev: dict[str, float] = {}
        for wi, week in enumerate(weeks):
            vals: dict[str, float] = {
                "skadegorelse": max(0, round(rnd.gauss(1.5 if a in ("araby", "centrum") else 0.6, 1))),
                "klotter": level(1.0), "nedskrapning": level(1.0), "samling": level(0.7),
                "buskorning": level(0.4), "berusning": level(0.5), "samlad_bedomning": level(1.2)}
            if a == "araby":
                vals["klotter"] = 3 if 4 <= wi < 16 else level(1.2)
                vals["samling"] = level(1.8)
            if a == "dalbo":
                vals["nedskrapning"] = 3 if wi < 8 else level(0.8)
            if a == "teleborg":
                vals["buskorning"] = min(3, level(0.3 + wi / 7))
            if a == "centrum":
                vals["berusning"] = 3 if wi % 4 in (0, 1) and wi > 3 else level(1.2)
                vals["brand"] = 1 if wi in (6, 7, 11) else 0
            if a in ("oster", "sigfridslund"):
                vals = {k: min(v, 1) for k, v in vals.items()}
            summaries = {}
            for code, v in vals.items():
                p = prev.get(code)
                it = items[code]
                high = (it.answer == "level" and v >= 3) or (it.answer == "count" and v >= 3)
                flag = "high" if high else ("rising" if p is not None and v >= p + 2 else
                                            ("new" if p == 0 and v > 0 and it.answer == "count" else None))
                summaries[code] = ItemSummary(item=code, answer=it.answer, label_sv=it.label_sv, label_en=it.label_en,
                                              value=float(v), reports=1 if v else 0, flag=flag,  # type: ignore[arg-type]
                                              previous=p)
                prev[code] = v
            expected = 4 + ai % 3
            received = expected - (1 if rnd.random() < 0.2 else 0) - (1 if rnd.random() < 0.05 else 0)
            data = PicturePublished(picture=PictureData(
                municipality_id=m, area_id=f"{a}-{m}", area_name=name, period=week, status="published", version=1,
                reports=received, items=summaries,
                completeness=Completeness(expected=expected, received=received, on_time=received,
                                          rate=received / expected)))
            out.append(new_event(type="se.est.picture.published", source="/test", data=data,
                                 id=f"picture:{a}-{m}:{week}:v1", subject=f"{a}-{m}"))
    return out


def realistic_measures(m: str) -> list[dict[str, Any]]:
    """Measures the styrgrupp decided for the realistic municipality."""
    return [
        {"title": "Klottersanering inom 24 timmar", "area_id": f"araby-{m}", "items": ["klotter"],
         "responsible_actor": f"actor-{m}", "decided_by": "Styrgruppen 2026-12-01", "start": "2026-12-07",
         "status": "active", "resources": {"hours": 60, "money_sek": 40000}},
        {"title": "Städinsats och fler papperskorgar", "area_id": f"dalbo-{m}", "items": ["nedskrapning"],
         "responsible_actor": f"actor-{m}", "decided_by": "Styrgruppen 2026-10-20", "start": "2026-10-26",
         "end": "2027-03-31", "status": "active", "resources": {"hours": 120, "money_sek": 85000}},
        {"title": "Trafikkontroller kvällstid", "area_id": f"teleborg-{m}", "items": ["buskorning"],
         "responsible_actor": f"polis-{m}", "decided_by": "Styrgruppen 2026-11-17", "start": "2026-11-23",
         "status": "planned", "resources": {"hours": 40}},
        {"title": "Nattvandring fredag och lördag", "area_id": f"centrum-{m}", "items": ["berusning", "samling"],
         "responsible_actor": f"kommun-{m}", "decided_by": "Styrgruppen 2026-09-08", "start": "2026-09-11",
         "status": "active", "resources": {"hours": 200, "money_sek": 30000}},
    ]
