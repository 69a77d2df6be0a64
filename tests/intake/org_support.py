"""Helpers for the organisation tests: the org events on the bus, their snapshots, and a large organisation."""

from __future__ import annotations

import json
from typing import Any

import nats
from est_shared.bus import load_org_snapshot
from est_shared.events import OrgChanged
from est_shared.org import OrgSnapshot


async def org_events(url: str) -> list[tuple[str, dict[str, Any], int]]:
    """All org events on the stream: (Nats-Msg-Id, CloudEvent, size in bytes)."""
    nc = await nats.connect(url)
    out = []
    try:
        js = nc.jetstream()
        info = await js.stream_info("EST_ORG")
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            m = await js.get_msg("EST_ORG", seq)
            out.append(((m.headers or {}).get("Nats-Msg-Id", ""), json.loads(m.data), len(m.data)))
    finally:
        await nc.close()
    return out


async def announced_snapshot(url: str, data: dict[str, Any]) -> OrgSnapshot:
    """The snapshot an est.org.changed event's data names (read from the object store)."""
    nc = await nats.connect(url)
    try:
        return await load_org_snapshot(nc.jetstream(), OrgChanged.model_validate(data))
    finally:
        await nc.close()


def large_org(people: int = 20_000, areas: int = 2_000, municipalities: int = 20) -> dict[str, Any]:
    """An organisation file as a mapping: ``areas`` areas spread over ``municipalities``, 200 actors, and
    ``people`` people: one in fifty a key function for a whole municipality, the rest reporters for two
    areas each. Person ``p{i}`` has the token ``tok-{i}``; ``admin`` (token ``tok-admin``) is an admin."""
    per = areas // municipalities
    munis = [{"id": f"m{m}", "name": f"Kommun {m}",
              "areas": [{"id": f"m{m}-a{a}", "name": f"Område {m}-{a}", "cadence": "weekly",
                         "places": ["centrum", "skolgarden", "parkeringen", "torget"]} for a in range(per)]}
             for m in range(municipalities)]
    actors = [{"id": f"act{i}", "name": f"Aktör {i}", "kind": "property_company"} for i in range(200)]
    ppl: list[dict[str, Any]] = [{"id": "admin", "name": "Admin", "actor": "act0", "roles": ["admin"],
                                  "token": "tok-admin"}]
    for i in range(people):
        m, a = i % municipalities, (i // municipalities) % per
        person = {"id": f"p{i}", "name": f"Person {i}", "actor": f"act{i % 200}", "email": f"p{i}@example.org",
                  "token": f"tok-{i}"}
        if i % 50 == 0:
            person |= {"roles": ["key_function"], "areas": [f"m{m}"]}
        else:
            person |= {"roles": ["reporter"], "areas": [f"m{m}-a{a}", f"m{m}-a{(a + 1) % per}"]}
        ppl.append(person)
    return {"municipalities": munis, "actors": actors, "people": ppl}


BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)) + "people: *i\n"
"""A YAML alias bomb: nine anchors of nine aliases each, 9^9 values once expanded."""
