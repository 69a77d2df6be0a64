"""The organisation as it was: each version the aggregator applies is recorded (``est_shared.orghistory``), so
a past period's picture, recomputed later, expects the reporters of that period, not today's."""

from __future__ import annotations

import logging
from datetime import datetime

from est_shared.org import OrgSnapshot
from est_shared.orghistory import record_org

from est_aggregator.pictures import db
from est_aggregator.pictures.deps import Deps

log = logging.getLogger("est.aggregator")


async def record_org_version(*, deps: Deps, snapshot: OrgSnapshot, now: datetime) -> int:
    """Record what ``snapshot`` holds from when it took effect (its ``applied_at``, else ``now``); returns how
    many stretches of areas and reporters began or ended."""
    async with deps.units.transaction() as s:
        changed = await record_org(snapshot, snapshot.applied_at or now, session=s, table=db.org_history)
    if changed:
        log.info("organisation version recorded", extra={"org_version": snapshot.version, "changed": changed})
    return changed
