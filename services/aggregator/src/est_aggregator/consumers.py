"""Bus registrations of the aggregator: the durable report consumer (batched, on its own puller), the
forfeiture consumer, and the channels it publishes on (declared for AsyncAPI). Thin: the work is in
``pictures.ingest``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from est_shared.batching import BatchConsumer
from est_shared.bus import add_consumer
from est_shared.events import (
    AlertData,
    CloudEvent,
    EventData,
    ForfeitureRecorded,
    PicturePublished,
    PictureUpdated,
    ReportSubmitted,
)
from est_shared.runtime import ServiceRuntime
from est_shared.subjects import REPORTS

from est_aggregator.pictures.deps import Deps
from est_aggregator.pictures.ingest import handle_forfeiture_recorded, handle_report_batch, handle_report_submitted
from est_aggregator.settings import AggregatorSettings

PUBLISHED: list[tuple[str, type[EventData], list[str], str]] = [
    ("est.picture.updated.{municipality}.{area}", PictureUpdated, ["se.est.picture.updated"],
     "an open picture changed (at most one per picture per EST_AGGREGATOR_UPDATE_INTERVAL)"),
    ("est.picture.published.{municipality}.{area}", PicturePublished, ["se.est.picture.published"],
     "a picture was published (version 1) or revised by a late or corrected report (version 2, 3, …)"),
    ("est.alert.raised.{municipality}.{area}", AlertData, ["se.est.alert.raised"],
     "an item's flag became high or rising in an area"),
    ("est.alert.resolved.{municipality}.{area}", AlertData, ["se.est.alert.resolved"], "that alert ended"),
]


def register(runtime: ServiceRuntime, *, settings: AggregatorSettings, deps: Deps) -> None:
    """Consume se.est.report.submitted in batches, idempotently (ack after commit, nack with backoff on failure,
    dead-letter what cannot be tallied)."""
    runtime.declare_consumed(settings.report_subject, ReportSubmitted, types=["se.est.report.submitted"],
                             description=f"checklist reports, taken in batches of up to {settings.batch_size} "
                                         f"(EST_REPORTS, durable {settings.durable}, its own pull requests)")
    for subject, data, types, description in PUBLISHED:
        runtime.declare_published(subject, data, types=types, description=description)

    async def on_reports(events: Sequence[CloudEvent[Any]]) -> Mapping[str, str] | None:
        await runtime.tables.wait()  # the tables exist only once the start hook ran
        wanted = [e for e in events if e.type == "se.est.report.submitted"]
        if not wanted:
            return None
        outcome = await handle_report_batch(wanted, deps=deps, org=runtime.directory.snapshot)
        return outcome.refused  # dead-lettered by the consumer, the rest acknowledged

    async def on_report(event: CloudEvent[Any]) -> None:
        await runtime.tables.wait()  # the tables exist only once the start hook ran
        if event.type != "se.est.report.submitted":
            return
        await handle_report_submitted(event, deps=deps, org=runtime.directory.snapshot)

    async def on_forfeiture(event: CloudEvent[Any]) -> None:
        await runtime.tables.wait()
        if event.type != "se.est.forfeiture.recorded":
            return
        await handle_forfeiture_recorded(event, deps=deps, org=runtime.directory.snapshot)

    reports = BatchConsumer(service="aggregator", stream=REPORTS, subject=settings.report_subject,
                            durable=settings.durable, handle_batch=on_reports, handle_one=on_report,
                            metrics=runtime.metrics, max_deliver=settings.consumer_max_deliver,
                            batch_size=settings.batch_size, linger=settings.batch_linger, expected=ReportSubmitted)

    deps.catching_up = lambda: reports.behind

    async def start_reports() -> None:
        await reports.start(runtime.js, runtime.broker.connection)

    runtime.on_start(start_reports)
    runtime.on_stop(reports.stop)
    if settings.forfeiture_subject:
        add_consumer(runtime.broker, service="aggregator", stream=REPORTS, subject=settings.forfeiture_subject,
                     durable=f"{settings.durable}-forfeitures", data=ForfeitureRecorded,
                     types=["se.est.forfeiture.recorded"], handle=on_forfeiture, metrics=runtime.metrics,
                     max_deliver=settings.consumer_max_deliver)
