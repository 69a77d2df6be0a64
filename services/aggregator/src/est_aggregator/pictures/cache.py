"""The report cache: the tallies of recently computed pictures' periods, kept in memory (in-loop SQLite and
PostgreSQL)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from est_aggregator.pictures.db import PictureKey, report_tokens, reports_for
from est_aggregator.pictures.domain.reports import ReportRecord
from est_aggregator.pictures.domain.tally import PeriodTally


class PeriodReports:
    """One picture period of an area: its stored reports (in ``reports_for``'s order) until they are
    tallied, then only their tally."""

    __slots__ = ("records", "tally")

    def __init__(self, records: list[ReportRecord]) -> None:
        self.records: list[ReportRecord] | None = records  # None once tallied
        self.tally: PeriodTally | None = None  # set by the caller; kept while reports are only added


class ReportCache:
    """The tallies of recently computed pictures' periods, kept in memory (in-loop SQLite and PostgreSQL).

    An entry holds a period's ``PeriodTally`` (only: its reports are read once, tallied and let go,
    so a busy period keeps no object per report for the garbage collector to walk) and the picture
    row's ``report_token`` it matches. Every batch that stores reports of a picture gives its row a
    new token in the same transaction; this process then adds its own new reports to the entry's
    tally if the entry matched the token the batch replaced, and drops the entry otherwise (another
    replica or process wrote in between). A look-up compares tokens, so an entry is used only while
    it counts exactly what the database holds. A tally that no longer fits (a correction of a report
    it counted) is built again from the database by ``compute_picture``. At most ``max_pictures``
    entries, least recently used dropped first.
    """

    def __init__(self, max_pictures: int = 5000) -> None:
        self.max_pictures = max_pictures
        self.entries: OrderedDict[PictureKey, tuple[str, PeriodReports]] = OrderedDict()
        self.hits = self.misses = 0

    async def periods(self, session: AsyncSession, area_id: str, idmap: Mapping[str, Any],
                      tokens: Mapping[str, str | None] | None = None) -> dict[Any, PeriodReports]:
        """The area's reports per picture period, for stored period ids ``idmap`` → picture period.

        ``tokens`` (picture period → report_token, as ``report_tokens`` gives them) when already read.
        Periods without a picture row (no report was ever stored for them) are left out. A current
        entry comes with its tally and no records; a new one with its records and no tally yet.
        """
        wanted: dict[str, list[str]] = {}
        for pid, period in idmap.items():
            wanted.setdefault(period.id, []).append(pid)
        if tokens is None:
            tokens = await report_tokens(session, area_id, wanted)
        by_id = {period.id: period for period in idmap.values()}
        out: dict[Any, PeriodReports] = {}
        for pic, pids in wanted.items():
            if pic not in tokens:
                continue
            token, key = tokens[pic], (area_id, pic)
            entry = self.entries.get(key)
            if entry is not None and token is not None and entry[0] == token and entry[1].tally is not None:
                self.entries.move_to_end(key)
                self.hits += 1
                group = entry[1]
            else:
                self.misses += 1
                group = PeriodReports(await reports_for(session, area_id, pids))
                if token is not None:
                    self._put(key, token, group)
            out[by_id[pic]] = group
        return out

    def _put(self, key: PictureKey, token: str, group: PeriodReports) -> None:
        self.entries[key] = (token, group)
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_pictures:
            self.entries.popitem(last=False)

    def committed(self, old_tokens: Mapping[PictureKey, str | None], token: str,
                  added: Mapping[PictureKey, Sequence[ReportRecord]]) -> None:
        """After a batch committed: follow the token where the entry was current, else forget it."""
        for key, old in old_tokens.items():
            entry = self.entries.get(key)
            if entry is None:
                continue
            tally = entry[1].tally
            if old is None or entry[0] != old or tally is None:  # not tallied yet: read again when needed
                del self.entries[key]
                continue
            for r in added.get(key, ()):
                tally.add(r)
            self.entries[key] = (token, entry[1])

    def clear(self) -> None:
        self.entries.clear()
