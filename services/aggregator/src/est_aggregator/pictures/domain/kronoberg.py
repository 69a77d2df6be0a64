"""The Kronoberg forfeiture figures: aggregates of protocols, merging and small-count coarsening."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from est_aggregator.pictures.domain.reports import as_utc

KRONOBERG_MIN_COUNT = 3


WEEKDAYS = ("mån", "tis", "ons", "tor", "fre", "lör", "sön")


TIMES_OF_DAY = ("00-06", "06-12", "12-18", "18-24")


AGE_BANDS = ("under_15", "15_17", "18_19")


# Counts of people or events in a Kronoberg block (coarsened for recipients outside police and social services).
_K_COUNTS = ("interventions", "containers", "under_18", "guardian_contacted", "guardian_came", "direct_forfeiture",
             "social_services_notified")


_K_COUNT_MAPS = ("age_bands", "sources", "by_place", "by_weekday", "by_time_of_day")


def kronoberg_aggregates(protocols: Sequence[Mapping[str, Any]], *, tz: str = "Europe/Stockholm",
                         ) -> dict[str, Any] | None:
    """Exact Kronoberg aggregates of forfeiture protocols; None when there were none.

    Interventions; litres (2 decimals) and containers by beverage type; age bands and the share
    under 18; guardian contacted / came; poured out on the spot (``direct_forfeiture``); stated
    sources by category (``unknown`` when none was stated); interventions by place, by local
    weekday (mån–sön) and by local time of day (00-06, 06-12, 12-18, 18-24). Exact: coarsen with
    ``coarsen_kronoberg`` before showing it outside the police and social services.
    """
    if not protocols:
        return None
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    litres: defaultdict[str, float] = defaultdict(float)
    containers: Counter[str] = Counter()
    weekdays: Counter[str] = Counter()
    times: Counter[str] = Counter()
    places: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    bands: Counter[str] = Counter()
    for p in protocols:
        for it in p.get("items") or []:
            bev = str(it.get("beverage") or "other")
            litres[bev] += float(it.get("volume_liters") or 0)
            containers[bev] += int(it.get("containers") or 0)
        local = as_utc(p["occurred_at"]).astimezone(zone)
        weekdays[WEEKDAYS[local.weekday()]] += 1
        times[TIMES_OF_DAY[local.hour // 6]] += 1
        if p.get("place"):
            places[str(p["place"])] += 1
        sources[str(p.get("source") or "unknown")] += 1
        bands[str(p.get("age_band"))] += 1
    n = len(protocols)
    under_18 = bands["under_15"] + bands["15_17"]
    return {
        "interventions": n,
        "litres_by_beverage": {k: round(v, 2) for k, v in sorted(litres.items())},
        "litres_total": round(sum(litres.values()), 2),
        "containers_by_beverage": dict(sorted(containers.items())),
        "containers": sum(containers.values()),
        "age_bands": {b: bands[b] for b in AGE_BANDS},
        "under_18": under_18,
        "share_under_18": round(under_18 / n, 2),
        "guardian_contacted": sum(1 for p in protocols if p.get("guardian_contacted")),
        "guardian_came": sum(1 for p in protocols if p.get("guardian_came")),
        "direct_forfeiture": sum(1 for p in protocols if p.get("direct_forfeiture")),
        "social_services_notified": sum(1 for p in protocols if p.get("social_services_notified")),
        "sources": dict(sorted(sources.items())),
        "by_place": dict(sorted(places.items())),
        "by_weekday": {d: weekdays[d] for d in WEEKDAYS if weekdays[d]},
        "by_time_of_day": {t: times[t] for t in TIMES_OF_DAY if times[t]},
        "coarsened": False,
    }


def merge_kronoberg(blocks: Iterable[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """The sum of exact Kronoberg blocks (e.g. a municipality's areas); None when all are None."""
    found = [b for b in blocks if b and not b.get("coarsened")]
    if not found:
        return None
    out: dict[str, Any] = {"interventions": 0, "litres_total": 0.0, "containers": 0}
    for b in found:
        for key in (*_K_COUNTS, "litres_total"):
            out[key] = out.get(key, 0) + b.get(key, 0)
        for key in (*_K_COUNT_MAPS, "litres_by_beverage", "containers_by_beverage"):
            into = out.setdefault(key, {})
            for k, v in (b.get(key) or {}).items():
                into[k] = into.get(k, 0) + v
    out["litres_total"] = round(out["litres_total"], 2)
    out["litres_by_beverage"] = {k: round(v, 2) for k, v in sorted(out["litres_by_beverage"].items())}
    for key in ("containers_by_beverage", "sources", "by_place"):
        out[key] = dict(sorted(out[key].items()))
    out["by_weekday"] = {d: out["by_weekday"][d] for d in WEEKDAYS if out["by_weekday"].get(d)}
    out["by_time_of_day"] = {t: out["by_time_of_day"][t] for t in TIMES_OF_DAY if out["by_time_of_day"].get(t)}
    out["share_under_18"] = round(out["under_18"] / out["interventions"], 2) if out["interventions"] else 0.0
    out["coarsened"] = False
    return out


def _small(value: Any, min_count: int) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < min_count:
        return f"<{min_count}"
    return value


def coarsen_kronoberg(block: Mapping[str, Any] | None, min_count: int = KRONOBERG_MIN_COUNT
                      ) -> dict[str, Any] | None:
    """A Kronoberg block as shown outside the police and social services (a picture may become public).

    Every count 1 … ``min_count``-1 becomes ``"<3"`` (0 stays 0); litres are rounded to whole
    litres, and with fewer than ``min_count`` interventions litres are shown as ``"<3 interventions"``
    and the share under 18 is hidden the same way. An already coarsened block is returned as is.
    """
    if block is None or block.get("coarsened"):
        return dict(block) if block is not None else None
    n = int(block.get("interventions") or 0)
    few = n < min_count
    hidden = f"<{min_count} interventions"
    out: dict[str, Any] = {}
    for key, value in block.items():
        if key in _K_COUNTS:
            out[key] = _small(value, min_count)
        elif key in _K_COUNT_MAPS or key == "containers_by_beverage":
            out[key] = {k: _small(v, min_count) for k, v in value.items()}
        elif key == "litres_by_beverage":
            out[key] = hidden if few else {k: round(v) for k, v in value.items()}
        elif key == "litres_total":
            out[key] = hidden if few else round(value)
        elif key == "share_under_18":
            out[key] = hidden if few else value
        else:
            out[key] = value
    out["coarsened"] = True
    out["threshold"] = min_count
    return out


def kronoberg_view(block: Mapping[str, Any] | None, *, personal: bool,
                   min_count: int = KRONOBERG_MIN_COUNT) -> dict[str, Any] | None:
    """The block a caller may see: exact for police and social services, coarsened for everyone else."""
    if block is None:
        return None
    return dict(block) if personal else coarsen_kronoberg(block, min_count)
