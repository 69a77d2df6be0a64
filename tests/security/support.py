"""Helpers for forfeiture and security tests: an organisation with police and social services, valid
personal identity numbers, protocol bodies and scanning of everything the system keeps or emits."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import nats

from tests.intake.support import TOKENS as INTAKE_TOKENS
from tests.intake.support import make_org

TOKENS = {**INTAKE_TOKENS, "petra": "tok-petra", "sara": "tok-sara", "olle": "tok-olle"}


def auth(who: str) -> dict[str, str]:
    """An Authorization header for a person of the forfeiture test organisation."""
    return {"Authorization": f"Bearer {TOKENS[who]}"}


def forfeiture_org(muni: str = "vaxjo", area: str = "araby", other_muni: str = "ljungby") -> dict[str, Any]:
    """The intake test organisation plus police and social services in it and a police officer elsewhere."""
    org = make_org(muni, area, f"{area}-b")
    org["municipalities"].append({"id": other_muni, "name": "Ljungby kommun",
                                  "areas": [{"id": f"{other_muni}-c", "name": "Centrum", "places": ["torget"]}]})
    org["actors"] += [{"id": "polisen", "name": "Polisen Kronoberg", "kind": "police"},
                      {"id": "soc", "name": "Socialtjänsten Växjö", "kind": "social_services"}]
    org["people"] += [
        {"id": "petra", "name": "Petra Polis", "actor": "polisen", "roles": ["police"], "areas": [muni],
         "token": TOKENS["petra"]},
        {"id": "sara", "name": "Sara Social", "actor": "soc", "roles": ["social_services"], "areas": [muni],
         "token": TOKENS["sara"]},
        {"id": "olle", "name": "Olle Ljungby", "actor": "polisen", "roles": ["police"], "areas": [other_muni],
         "token": TOKENS["olle"]},
    ]
    return org


def check_digit(nine: str) -> int:
    """The Luhn check digit of YYMMDDNNN."""
    total = 0
    for i, ch in enumerate(nine):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return (10 - total % 10) % 10


def pnr(born: date, serial: str = "238", *, coordination: bool = False, long: bool = True, sep: str = "-") -> str:
    """A personal identity number with a correct check digit (test data, generated)."""
    day = born.day + (60 if coordination else 0)
    nine = f"{born:%y%m}{day:02d}{serial}"
    tail = f"{serial}{check_digit(nine)}"
    head = f"{born:%Y%m}{day:02d}" if long else f"{born:%y%m}{day:02d}"
    return f"{head}{sep}{tail}"


def born_years_ago(years: int, days_more: int = 30, now: datetime | None = None) -> date:
    """A birth date making someone ``years`` old (and ``days_more`` days) today."""
    today = (now or datetime.now(UTC)).date()
    return date(today.year - years, today.month, min(today.day, 28)) - timedelta(days=days_more)


def protocol(muni: str = "vaxjo", area: str | None = "araby", *, name: str = "Kim Testsson",
             number: str | None = None, **kw: Any) -> dict[str, Any]:
    """A valid protocol body for a 16-year-old, forfeited an hour ago."""
    body: dict[str, Any] = {
        "protocol_id": str(uuid.uuid4()), "municipality_id": muni, "area_id": area, "place": "centrum",
        "occurred_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(), "unit": "Ingripande Växjö",
        "officer": "inspektör 4711",
        "person": {"name": name, "personal_number": number or pnr(born_years_ago(16))},
        "items": [{"beverage": "starköl", "volume_liters": 1.5, "containers": 3},
                  {"beverage": "sprit", "volume_liters": 0.7, "containers": 1}],
        "direct_forfeiture": True, "guardian_contacted": True, "guardian_came": True,
        "source": "adult_supplier", "source_details": "köpt av en äldre kille vid Maxi",
        "social_services_notified": True,
    }
    body.update(kw)
    return body


async def all_stream_messages(url: str) -> list[tuple[str, str, bytes, dict[str, str]]]:
    """Every message of every stream: (stream, subject, data, headers)."""
    nc = await nats.connect(url)
    out: list[tuple[str, str, bytes, dict[str, str]]] = []
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            name = info.config.name
            first, last = info.state.first_seq, info.state.last_seq
            for seq in range(first, last + 1) if info.state.messages else ():
                try:
                    msg = await js.get_msg(name, seq)
                except Exception:  # deleted in between
                    continue
                out.append((name, msg.subject, msg.data or b"", dict(msg.headers or {})))
    finally:
        await nc.close()
    return out


async def last_event(url: str, subject: str) -> dict[str, Any]:
    """The newest CloudEvent on a subject of EST_REPORTS."""
    nc = await nats.connect(url)
    try:
        msg = await nc.jetstream().get_last_msg("EST_REPORTS", subject)
        return json.loads(msg.data)
    finally:
        await nc.close()
