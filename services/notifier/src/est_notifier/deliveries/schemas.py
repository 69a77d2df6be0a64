"""Pydantic models of the ledger's and the personal-data log's HTTP answers."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class AttemptOut(BaseModel):
    attempt: int
    at: datetime
    status: str = Field(description="delivered | retry | failed | refused (the webhook target is not allowed: "
                        "nothing was sent) | dead | cancelled")
    response_code: int | None
    error: str | None
    duration_ms: int | None
    delivery_id: str
    subscription_id: str
    event_id: str
    event_type: str
    channel: str


class ReminderRef(BaseModel):
    """Whom a reminder delivery reminded of what."""

    person_id: str
    person_name: str | None = Field(description="the name the reminder greeted (None: not recorded)")
    period: str = Field(examples=["2026-W48"])
    kind: str = Field(description="before | after (the period's deadline)")
    areas: list[str] = Field(description="the areas the person had not reported for")


class HandoverRef(BaseModel):
    """Who a subscription went from and to, by whom and when (a hand-over, or an ended one restored)."""

    kind: str = Field(description="handed_over | restored")
    from_person_id: str
    from_name: str = Field(examples=["Lena Lind"])
    to_person_id: str
    to_name: str = Field(examples=["Per Persson"])
    by_person_id: str | None = Field(description="the admin who made it (None: the organisation file)")
    by_name: str | None
    org_version: int | None = Field(description="the organisation's version that made it (the file's hand-overs)")
    at: datetime
    text: dict[str, str] = Field(description="the sentence an admin reads, sv and en",
                                 examples=[{"sv": "Överlämnad från Lena Lind till Per Persson av Ada Admin "
                                                  "2026-12-02 08:00 UTC",
                                            "en": "Handed over from Lena Lind to Per Persson by Ada Admin at "
                                                  "2026-12-02 08:00 UTC"}])


class DeliveryOut(BaseModel):
    delivery_id: str = Field(description="Stable id; also X-EST-Delivery and Idempotency-Key")
    subscription_id: str
    event_id: str
    event_type: str
    channel: str
    target: str
    status: str = Field(description="pending | delivering | delivered | failed | refused (the egress policy "
                        "refused the webhook target; nothing was sent and the subscription is paused) | dead | "
                        "cancelled (its subscription ended) | ended (the row recording that a subscription ended) | "
                        "withheld (not sent: the owner may not receive this kind now) | handed_over (the row "
                        "recording that a subscription went to another owner, see handover) | restored (an ended "
                        "subscription runs again, see handover)")
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
    reminder: ReminderRef | None = Field(default=None, description="whom a reminder reminded of what "
                                         "(reminder deliveries only)")
    handover: HandoverRef | None = Field(default=None, description="who a subscription went from and to, by whom "
                                         "(handed_over and restored rows only)")
    attempt_log: list[AttemptOut] = Field(description="One row per attempt")


class PersonalReadOut(BaseModel):
    """One opening of sealed personal data to deliver a notification to social services."""

    id: int
    at: datetime
    protocol_id: str
    event_id: str
    delivery_id: str
    attempt: int
    subscription_id: str
    owner_id: str = Field(description="the person the data was delivered for")
    channel: str
    target: str
    purpose: str = Field(examples=["social_services_notification"])
    outcome: str = Field(description="outcome of the attempt: delivered | retry | failed | refused | dead")


class DueNotificationOut(BaseModel):
    """A notification due to social services, as their list shows it (no personal data: read the protocol
    through the intake, GET /v1/forfeitures/{protocol_id}?purpose=…, which logs the read)."""

    protocol_id: str
    municipality_id: str
    municipality_name: str
    area_id: str | None
    area_name: str | None
    place: str | None
    occurred_at: datetime
    age_band: str = Field(examples=["15_17"], description="under_15, 15_17 or 18_19")
    reason: str = Field(examples=["under_18"], description="under_18 (always) or requested_by_police")
    received_at: datetime = Field(description="when the notifier received it")
