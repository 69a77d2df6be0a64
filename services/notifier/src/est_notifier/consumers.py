"""Durable JetStream consumers of the notifier (thin: they hand events to the fan-out)."""

from __future__ import annotations

from est_shared.bus import Handler, add_consumer
from est_shared.events import (
    AlertData,
    AnalysisPublished,
    EventData,
    ForfeitureNotificationDue,
    PicturePublished,
    PictureUpdated,
)
from est_shared.runtime import ServiceRuntime
from est_shared.subjects import ALERTS, ANALYSES, PICTURES, REPORTS, StreamDef

from est_notifier.settings import NotifierSettings


def register(runtime: ServiceRuntime, *, settings: NotifierSettings, handle: Handler,
             handle_update: Handler | None = None) -> None:
    """One durable per stream: published pictures, raised/resolved alerts, published analyses, notifications
    for social services (EST_REPORTS, sealed personal data); and one on updated pictures for the reminders."""
    m = settings.municipality_filter

    def consume(stream: StreamDef, subject: str, durable: str, data: type[EventData], types: list[str],
                handler: Handler = handle) -> None:
        add_consumer(runtime.broker, service="notifier", stream=stream, subject=subject, durable=durable, data=data,
                     types=types, handle=handler, metrics=runtime.metrics, max_deliver=settings.consumer_max_deliver,
                     ack_wait=settings.consumer_ack_wait)

    consume(PICTURES, f"est.picture.published.{m}.*", settings.durable_pictures, PicturePublished,
            ["se.est.picture.published"])
    consume(ALERTS, f"est.alert.*.{m}.*", settings.durable_alerts, AlertData,
            ["se.est.alert.raised", "se.est.alert.resolved"])
    consume(ANALYSES, f"est.analysis.published.{m}", settings.durable_analyses, AnalysisPublished,
            ["se.est.analysis.published"])
    consume(REPORTS, f"est.forfeiture.notification_due.{m}", settings.durable_notifications,
            ForfeitureNotificationDue, ["se.est.forfeiture.notification_due"])
    if handle_update is not None:
        consume(PICTURES, f"est.picture.updated.{m}.*", settings.durable_updates, PictureUpdated,
                ["se.est.picture.updated"], handle_update)
