"""The intake on the bus: it consumes nothing of its own (the organisation feed is the shared runtime's) and
publishes reports, forfeiture protocols and organisation versions; here those channels are declared, so that
``/asyncapi.json`` documents them with their schemas."""

from __future__ import annotations

from est_shared.events import ForfeitureNotificationDue, ForfeitureRecorded, OrgChanged, ReportSubmitted
from est_shared.runtime import ServiceRuntime
from est_shared.subjects import ORG_CHANGED


def register(runtime: ServiceRuntime) -> None:
    """Declare what the intake publishes."""
    runtime.declare_published("est.report.submitted.{municipality}.{area}", ReportSubmitted,
                              types=["se.est.report.submitted"],
                              description="a checklist report was accepted (answered 202 once JetStream stored it; "
                                          "Nats-Msg-Id = the event id)")
    runtime.declare_published("est.forfeiture.recorded.{municipality}", ForfeitureRecorded,
                              types=["se.est.forfeiture.recorded"],
                              description="a Kronoberg forfeiture protocol was recorded; no personal data in clear")
    runtime.declare_published("est.forfeiture.notification_due.{municipality}", ForfeitureNotificationDue,
                              types=["se.est.forfeiture.notification_due"],
                              description="social services must be told; the person is sealed with EST_PII_KEY")
    runtime.declare_published(ORG_CHANGED, OrgChanged, types=["se.est.org.changed"],
                              description="a new organisation version; its snapshot is in the object store "
                                          "EST_ORG_SNAPSHOTS")
