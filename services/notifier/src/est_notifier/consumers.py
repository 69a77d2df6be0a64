"""Durable JetStream consumers of the notifier (thin: they hand events to the fan-out)."""

from __future__ import annotations

from est_shared.bus import Handler, add_consumer
from est_shared.events import AlertData, AnalysisPublished, ForfeitureNotificationDue, PicturePublished, PictureUpdated
from est_shared.runtime import ServiceRuntime
from est_shared.subjects import ALERTS, ANALYSES, PICTURES, REPORTS

from est_notifier.settings import NotifierSettings


def register(runtime: ServiceRuntime, *, settings: NotifierSettings, handle: Handler,
             handle_update: Handler | None = None) -> None:
    """One durable per stream: published pictures, raised/resolved alerts, published analyses, notifications
    for social services (EST_REPORTS, sealed personal data); and one on updated pictures for the reminders."""
    m = settings.municipality_filter
    common = {"service": "notifier", "handle": handle, "metrics": runtime.metrics,
              "max_deliver": settings.consumer_max_deliver, "ack_wait": settings.consumer_ack_wait}
    add_consumer(runtime.broker, stream=PICTURES, subject=f"est.picture.published.{m}.*",
                 durable=settings.durable_pictures, data=PicturePublished, types=["se.est.picture.published"],
                 **common)  # type: ignore[arg-type]
    add_consumer(runtime.broker, stream=ALERTS, subject=f"est.alert.*.{m}.*", durable=settings.durable_alerts,
                 data=AlertData, types=["se.est.alert.raised", "se.est.alert.resolved"], **common)  # type: ignore[arg-type]
    add_consumer(runtime.broker, stream=ANALYSES, subject=f"est.analysis.published.{m}",
                 durable=settings.durable_analyses, data=AnalysisPublished, types=["se.est.analysis.published"],
                 **common)  # type: ignore[arg-type]
    add_consumer(runtime.broker, stream=REPORTS, subject=f"est.forfeiture.notification_due.{m}",
                 durable=settings.durable_notifications, data=ForfeitureNotificationDue,
                 types=["se.est.forfeiture.notification_due"], **common)  # type: ignore[arg-type]
    if handle_update is not None:
        add_consumer(runtime.broker, stream=PICTURES, subject=f"est.picture.updated.{m}.*",
                     durable=settings.durable_updates, data=PictureUpdated, types=["se.est.picture.updated"],
                     **{**common, "handle": handle_update})  # type: ignore[arg-type]
