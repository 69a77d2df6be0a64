"""The periods a picture spans: the years it may fall in, its history window, the ids its reports carry."""

from __future__ import annotations

from functools import lru_cache

from est_shared.periods import Period

from est_aggregator.pictures.domain.errors import InvalidPeriod

FIRST_YEAR, LAST_YEAR = 1900, 2999  # the years a picture's period may fall in (its history and deadline too)


def check_period_years(period: Period) -> Period:
    """The period, if it falls in ``FIRST_YEAR`` … ``LAST_YEAR``; else InvalidPeriod (dates run out near years
    1 and 9999, and a picture reaches periods back and a deadline forward)."""
    if not FIRST_YEAR <= period.start.year <= LAST_YEAR:
        raise InvalidPeriod(f"{period.id} is not between {FIRST_YEAR} and {LAST_YEAR}")
    return period


@lru_cache(maxsize=4096)
def _history(period: Period, window: int) -> tuple[Period, ...]:
    out = [period]
    for _ in range(window):
        out.append(out[-1].prev())
    return tuple(reversed(out[1:]))


def history_periods(period: Period, window: int) -> list[Period]:
    """The ``window`` periods before ``period``, oldest first."""
    return list(_history(period, window))


def period_ids(period: Period) -> set[str]:
    """Ids under which reports of a period may be stored (a biweekly period also by its two weeks)."""
    ids = {period.id}
    if period.kind == "biweek":
        ids |= {w.id for w in period.weeks()}
    return ids
