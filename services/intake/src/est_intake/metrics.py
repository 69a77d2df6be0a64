"""Metrics of the intake on the service registry, named ``est_intake_…``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class IntakeMetrics:
    """Intake metrics on the service registry, named ``est_intake_…``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.accepted = Counter("est_intake_reports_accepted_total", "Reports accepted, by way in",
                                ["via"], registry=registry)
        self.rejected = Counter("est_intake_reports_rejected_total", "Reports refused, by reason",
                                ["reason"], registry=registry)
        self.replayed = Counter("est_intake_reports_replayed_total", "Identical resends answered from the "
                                "idempotency store", registry=registry)
        self.late = Counter("est_intake_reports_late_total", "Reports accepted after the period deadline",
                            registry=registry)
        self.publish_seconds = Histogram("est_intake_publish_seconds", "Time from publish to JetStream ack",
                                         buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5),
                                         registry=registry)
        self.org_applies = Counter("est_intake_org_applies_total", "Organisation applies, by outcome",
                                   ["outcome"], registry=registry)


class ForfeitureMetrics:
    """Forfeiture metrics on the intake registry (labels never carry personal data)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.recorded = Counter("est_intake_forfeitures_total", "Forfeiture protocols posted, by outcome",
                                ["outcome"], registry=registry)
        self.reads = Counter("est_intake_forfeiture_reads_total", "Reads of forfeiture protocols, by outcome",
                             ["outcome"], registry=registry)
        self.deleted = Counter("est_intake_forfeiture_personal_data_deleted_total",
                               "Protocols whose personal data was deleted after retention", registry=registry)
        self.reencrypted = Counter("est_intake_forfeiture_reencrypted_total",
                                   "Protocols re-encrypted under the primary key", registry=registry)
        self.republished = Counter("est_intake_forfeiture_republished_total",
                                   "Stored protocols whose event the upkeep job published", registry=registry)
        self.notifications = Counter("est_intake_forfeiture_notifications_total",
                                     "Social-services notifications published, by reason (under_18, "
                                     "requested_by_police)", ["reason"], registry=registry)
        self.unlogged = Counter("est_intake_forfeiture_unlogged_attempts_total",
                                "Reads without a valid token beyond the access-log budget (counted, not logged)",
                                registry=registry)
        self.credential_changes = Counter("est_intake_forfeiture_credential_changes_total",
                                          "New tokens or read roles of police and social-services people, by kind",
                                          ["kind"], registry=registry)


