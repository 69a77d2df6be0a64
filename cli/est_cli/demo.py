"""A demo municipality (Växjö) with realistic history, so pictures, alerts and analyses show something.

History is generated deterministically (same seed, same report ids), so loading it again after a
restart changes nothing: the intake answers the identical replays with their original answers.
"""

from __future__ import annotations

import math
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from est_shared.checklists import EST_STANDARD_1
from est_shared.periods import Period

DEMO_NS = uuid.UUID("5b8f0a4e-3c1d-4e7a-9f00-e57e57a9e5d0")
WEEKS_OF_HISTORY = 60

DEMO_TOKENS = {
    "Admin (admin)": "demo-admin",
    "Anna, bovärd Växjöhem (reporter)": "demo-anna",
    "Erik, fältassistent (reporter)": "demo-erik",
    "Sara, väktare (reporter)": "demo-sara",
    "Lena (trygghetssamordnare)": "demo-lena",
    "Karin, kommunpolis (police)": "demo-karin",
    "Styrgruppen (styrgrupp)": "demo-styr",
    "Socialtjänsten (social_services)": "demo-soc",
}

AREAS = {
    "araby": ("Araby", ["centrum", "skolgarden", "parkeringen", "trapphusen", "hallplatsen"]),
    "dalbo": ("Dalbo", ["torget", "skolgarden", "garaget", "gangtunneln"]),
    "teleborg": ("Teleborg", ["centrum", "idrottsplatsen", "parken"]),
    "vaxjo-centrum": ("Växjö centrum", ["stortorget", "resecentrum", "p-huset", "parken"]),
}


# invented outlines near the real neighbourhoods of Växjö (WGS 84 lon/lat), and a point for each place
_OUTLINES = {
    "araby": [(14.765, 56.885), (14.785, 56.882), (14.793, 56.890), (14.782, 56.898), (14.766, 56.895)],
    "dalbo": [(14.815, 56.861), (14.834, 56.858), (14.842, 56.867), (14.828, 56.873), (14.813, 56.869)],
    "teleborg": [(14.790, 56.842), (14.815, 56.840), (14.822, 56.851), (14.806, 56.858), (14.789, 56.853)],
    "vaxjo-centrum": [(14.797, 56.874), (14.817, 56.872), (14.822, 56.881), (14.806, 56.886), (14.796, 56.881)],
}


def _located(area: str, places: list[str]) -> list[dict[str, Any]]:
    """The area's places, each at a point between its outline's centre and one of its corners."""
    ring = _OUTLINES[area]
    cx, cy = sum(p[0] for p in ring) / len(ring), sum(p[1] for p in ring) / len(ring)
    return [{"name": name, "location": {"type": "Point", "coordinates": [
        round(cx + (ring[k % len(ring)][0] - cx) * 0.55, 5), round(cy + (ring[k % len(ring)][1] - cy) * 0.55, 5)]}}
        for k, name in enumerate(places)]


def _outline(area: str) -> dict[str, Any]:
    ring = [list(p) for p in _OUTLINES[area]]
    return {"type": "Polygon", "coordinates": [[*ring, list(ring[0])]]}  # a copy: YAML would write an alias


def demo_org() -> dict[str, Any]:
    """The demo organisation file as data."""
    return {
        "municipalities": [{
            "id": "vaxjo", "name": "Växjö kommun", "analysis_period": "tertial",
            "areas": [{"id": a, "name": n, "cadence": "weekly", "places": _located(a, p), "geometry": _outline(a)}
                      for a, (n, p) in AREAS.items()],
        }],
        "actors": [
            {"id": "vaxjo-kommun", "name": "Växjö kommun", "kind": "municipality"},
            {"id": "polisen", "name": "Polisen lokalpolisområde Växjö", "kind": "police"},
            {"id": "vaxjohem", "name": "Växjöhem AB", "kind": "property_company"},
            {"id": "securitas", "name": "Bevakningsbolaget", "kind": "security_company"},
            {"id": "socialtjansten", "name": "Socialtjänsten Växjö", "kind": "social_services"},
        ],
        "people": [
            {"id": "admin", "name": "Systemförvaltare", "actor": "vaxjo-kommun", "email": "admin@example.org",
             "roles": ["admin"], "areas": ["vaxjo"], "token": "demo-admin"},
            {"id": "anna", "name": "Anna Andersson", "actor": "vaxjohem", "email": "anna@example.org",
             "roles": ["reporter"], "areas": ["araby", "dalbo"], "token": "demo-anna"},
            {"id": "erik", "name": "Erik Eriksson", "actor": "vaxjo-kommun", "email": "erik@example.org",
             "roles": ["reporter"], "areas": ["vaxjo"], "token": "demo-erik"},
            {"id": "sara", "name": "Sara Svensson", "actor": "securitas", "email": "sara@example.org",
             "roles": ["reporter"], "areas": ["araby", "vaxjo-centrum"], "token": "demo-sara"},
            {"id": "lena", "name": "Lena Lind", "actor": "vaxjo-kommun", "email": "lena@example.org",
             "roles": ["key_function", "beredningsgrupp"], "areas": ["vaxjo"], "token": "demo-lena"},
            {"id": "karin", "name": "Karin Karlsson", "actor": "polisen", "email": "karin@example.org",
             "roles": ["key_function", "police"], "areas": ["vaxjo"], "token": "demo-karin"},
            {"id": "styr", "name": "Styrgruppens ordförande", "actor": "vaxjo-kommun", "email": "styr@example.org",
             "roles": ["styrgrupp", "beredningsgrupp"], "areas": ["vaxjo"], "token": "demo-styr"},
            {"id": "soc", "name": "Socialsekreterare", "actor": "socialtjansten", "email": "soc@example.org",
             "roles": ["social_services"], "areas": ["vaxjo"], "token": "demo-soc"},
        ],
    }


def write_demo_org(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Demo organisation written by `est up --demo`\n"
                    + yaml.safe_dump(demo_org(), allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


# Area character: base intensity per item, and a "story" that makes a problem persist.
_BASE = {"araby": 1.3, "dalbo": 1.0, "teleborg": 0.5, "vaxjo-centrum": 0.9}


def _reporters(area: str) -> list[tuple[str, str]]:
    out = [("erik", "vaxjo-kommun")]
    if area in ("araby", "dalbo"):
        out.append(("anna", "vaxjohem"))
    if area in ("araby", "vaxjo-centrum"):
        out.append(("sara", "securitas"))
    return out


def history_reports(now: datetime, weeks: int = WEEKS_OF_HISTORY, seed: int = 7) -> list[dict[str, Any]]:
    """Weekly reports for the demo areas over the last ``weeks`` weeks, the current week included."""
    rng = random.Random(seed)
    current = Period.week_containing(now.date())
    out: list[dict[str, Any]] = []
    for back in range(weeks, -1, -1):
        week = current.shift(-back)
        season = 1 + 0.5 * math.sin((week.start.timetuple().tm_yday - 100) / 365 * 2 * math.pi)
        for area, (_, places) in AREAS.items():
            base = _BASE[area] * season
            for reporter, _actor in _reporters(area):
                r = random.Random(f"{seed}:{area}:{week.id}:{reporter}")
                if back > 0 and r.random() < 0.08:
                    continue  # a missing report: completeness shows it
                if back == 0 and r.random() < 0.5:
                    continue  # the current week is still being reported
                answers: dict[str, Any] = {}
                nothing = r.random() < 0.12 * (2 - base)
                if not nothing:
                    for item in EST_STANDARD_1.items:
                        lam = base * {"skadegorelse": 0.9, "klotter": 0.8, "nedskrapning": 1.0, "brand": 0.15,
                                      "samling": 0.6, "narkotika": 0.3, "hot_vald": 0.2, "inbrott": 0.3,
                                      "buskorning": 0.5, "berusning": 0.5, "halvoffentligt": 0.4,
                                      "incident_personal": 0.1}.get(item.code, 0.2)
                        # Araby's story: gatherings and drug dealing at the school yard from 20 weeks ago,
                        # until lighting and youth activities start working 6 weeks ago.
                        if area == "araby" and item.code in ("samling", "narkotika", "buskorning") and 6 < back < 20:
                            lam *= 3.2
                        if area == "dalbo" and item.code == "klotter" and back < 10:
                            lam *= 2.5
                        hits = _poisson(r, lam)
                        if hits == 0:
                            continue
                        if item.answer == "count":
                            value: Any = hits
                        elif item.answer == "level":
                            value = min(3, hits)
                        else:
                            value = True
                        answer: dict[str, Any] = {"value": value}
                        if r.random() < 0.6:
                            answer["places"] = [r.choice(places)]
                        answers[item.code] = answer
                    lvl = max((a["value"] for c, a in answers.items()
                               if EST_STANDARD_1.item(c).answer == "level"), default=0)  # type: ignore[union-attr]
                    answers["samlad_bedomning"] = {"value": min(3, int(lvl))}
                submitted = datetime.combine(week.start + timedelta(days=4), datetime.min.time(), UTC) + timedelta(
                    hours=8 + r.random() * 8)
                if r.random() < 0.07:
                    submitted += timedelta(days=4 + r.random() * 3)  # late: after Monday's deadline
                if submitted > now:
                    continue  # not yet written; a later start of the demo adds it
                out.append({
                    "report_id": str(uuid.uuid5(DEMO_NS, f"{area}:{week.id}:{reporter}")),
                    "area_id": area, "period": week.id, "checklist": EST_STANDARD_1.ref,
                    "answers": {} if nothing else answers, "nothing_to_report": nothing, "note": "",
                    "reporter_id": reporter, "submitted_at": submitted.isoformat(),
                })
    rng.shuffle(out)
    out.sort(key=lambda x: x["submitted_at"])
    return out


def _poisson(r: random.Random, lam: float) -> int:
    k, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= r.random()
        if p <= limit:
            return k
        k += 1


def load_demo_history(intake_url: str, *, data_dir: Path) -> None:
    """Send the demo history through the intake's import API (idempotent), with a progress bar."""
    from est_cli.importer import post_import

    reports = history_reports(datetime.now(UTC))
    result = post_import(reports, url=intake_url, token=DEMO_TOKENS["Admin (admin)"],
                         label=f"Loading {len(reports)} demo reports ({WEEKS_OF_HISTORY} weeks)")
    print(f"  demo history: {result['accepted']} accepted, {result['rejected']} rejected", flush=True)
    if result["rejected"]:
        print(f"  first problems: {result['problems'][:3]}", flush=True)
