"""Helpers for the analysis service tests: an organisation, picture events, auth headers, polling."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from est_shared.events import CloudEvent, Completeness, ItemSummary, PictureData, PicturePublished, new_event
from est_shared.org import Actor, Area, Municipality, OrgSnapshot, Person, hash_token

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


def auth(person: str, m: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {person}-{m}"}


async def wait_for(check: Callable[[], Awaitable[Any]], timeout: float = 10.0, interval: float = 0.1) -> Any:
    """Poll until ``check`` returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


