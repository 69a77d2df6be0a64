"""Event contracts: the CloudEvents 1.0 envelope and the data of every event on the bus.

Events are facts in the past tense, versioned additively. Producers validate strictly with these
models; consumers read only the fields they use (``extra="ignore"`` on data models).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T", bound=BaseModel)

EVENT_TYPE_PREFIX = "se.est."


class EventData(BaseModel):
    """Base of all event payloads: frozen; unknown fields ignored so producers can add fields."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class CloudEvent(BaseModel, Generic[T]):
    """A CloudEvents 1.0 JSON envelope; ``id`` doubles as the ``Nats-Msg-Id`` header."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(description="Unique event id; also the Nats-Msg-Id header", examples=["3f0c…"])
    source: str = Field(description="Producing service, e.g. /est/intake", examples=["/est/intake"])
    type: str = Field(description="Event type", examples=["se.est.report.submitted"])
    time: datetime = Field(description="When the fact happened (UTC)")
    subject: str | None = Field(default=None, description="What the event is about, e.g. area id")
    datacontenttype: Literal["application/json"] = "application/json"
    correlationid: str | None = Field(default=None, description="Correlation id across services")
    data: T


def new_event(
    *, type: str, source: str, data: T, subject: str | None = None, id: str | None = None,
    time: datetime | None = None, correlationid: str | None = None,
) -> CloudEvent[T]:
    """Build an envelope; ``id`` defaults to a random UUID, ``time`` to now, ``correlationid`` to the
    correlation id of the request or event being handled."""
    from est_shared.observability import correlation_id

    return envelope_of(type_of(data))(
        id=id or str(uuid.uuid4()), source=source, type=type, time=time or datetime.now(UTC),
        subject=subject, data=data, correlationid=correlationid or correlation_id.get(),
    )


def type_of(data: BaseModel) -> type[BaseModel]:
    return type(data)


_ENVELOPES: dict[type[BaseModel], type[CloudEvent[Any]]] = {}


def envelope_of(data_type: type[BaseModel]) -> type[CloudEvent[Any]]:
    """``CloudEvent[data_type]``, parametrised once per data type (pydantic builds a class each time)."""
    found = _ENVELOPES.get(data_type)
    if found is None:
        found = _ENVELOPES[data_type] = CloudEvent[data_type]  # type: ignore[valid-type]
    return found


# --- reports -----------------------------------------------------------------------------

class Answer(EventData):
    """One checklist answer: a count (int ≥ 0), a level (0-3) or yes/no."""

    value: int | bool = Field(description="count, level 0-3 or boolean, as the checklist says")
    places: list[str] = Field(default_factory=list, description="place ids of the area")
    note: str = Field(default="", description="short note; must not identify people")


class ReportSubmitted(EventData):
    """A reporter's checklist report for an area and period was accepted."""

    report_id: str = Field(description="client-generated UUID", examples=["8c0e2f8e-6a5b-4f0e-9d52-0b7b1c2f9a11"])
    municipality_id: str = Field(examples=["vaxjo"])
    area_id: str = Field(examples=["araby"])
    period: str = Field(description="reporting period id", examples=["2026-W48"])
    checklist: str = Field(description="checklist id@version", examples=["est-standard@1"])
    answers: dict[str, Answer] = Field(default_factory=dict)
    nothing_to_report: bool = False
    note: str = ""
    supersedes: str | None = Field(default=None, description="report_id this one corrects")
    reporter_id: str = Field(examples=["anna"])
    actor_id: str = Field(examples=["vaxjohem"])
    received_at: datetime
    late: bool = False
    withdrawn: bool | None = Field(default=None, description="true: the sender withdraws the report named in "
                                   "`supersedes`; this one has no answers and counts for nothing (left out "
                                   "otherwise)")


class ForfeitureRecorded(EventData):
    """A Kronoberg forfeiture protocol was recorded; no personal data in clear."""

    protocol_id: str
    municipality_id: str
    area_id: str | None = None
    place: str | None = None
    occurred_at: datetime
    age_band: Literal["under_15", "15_17", "18_19"]
    items: list[dict[str, Any]] = Field(default_factory=list, description="beverage, volume_liters, containers")
    direct_forfeiture: bool = False
    guardian_contacted: bool = False
    guardian_came: bool = False
    source: str | None = Field(default=None, description="stated source as a category, never free text")
    social_services_notified: bool = False


class ForfeitureNotificationDue(EventData):
    """Social services must be notified of a forfeiture (a young person under 18, or the police asked).

    Published by the intake on ``est.forfeiture.notification_due.<municipality>`` next to
    ``se.est.forfeiture.recorded``. Everything in clear is non-personal; the person (name, personal
    identity number, age, guardian facts) is in ``sealed_person``: one AES-256-GCM ciphertext of a JSON
    object under the ``EST_PII_KEY`` key ``key_id``, bound (associated data) to the protocol id and the
    purpose (``est_shared.sealed.purpose_context``). Only the notifier opens it, and only to deliver it
    to a social-services subscription of the municipality.
    """

    protocol_id: str
    municipality_id: str
    area_id: str | None = None
    place: str | None = None
    occurred_at: datetime
    age_band: Literal["under_15", "15_17", "18_19"]
    reason: Literal["under_18", "requested_by_police"] = Field(
        description="under_18: always; requested_by_police: an 18-19-year-old the officer asked to notify about")
    items: list[dict[str, Any]] = Field(default_factory=list, description="beverage, volume_liters, containers")
    direct_forfeiture: bool = False
    source: str | None = Field(default=None, description="stated source as a category, never free text")
    social_services_notified: bool = Field(default=False, description="the officer says social services were "
                                           "already told by other means")
    unit: str | None = Field(default=None, description="police unit (not a person)")
    purpose: str = Field(default="social_services_notification", description="what the sealed data is for")
    key_id: str = Field(description="id of the EST_PII_KEY key that sealed the person")
    sealed_person: str = Field(description="v1.<key id>.<base64url>: the sealed JSON object with name, "
                               "personal_number, age, guardian_contacted and guardian_came")


# --- pictures ----------------------------------------------------------------------------

class ItemSummary(EventData):
    """One checklist item in a situational picture."""

    item: str
    answer: Literal["count", "level", "boolean"]
    label_sv: str = ""
    label_en: str = ""
    value: float = Field(description="count: total (several reports of one reporter add up); level: max; "
                               "boolean: reports that said yes")
    reports: int = Field(description="reports answering the item with a non-zero value")
    places: dict[str, int] = Field(default_factory=dict, description="place id -> mentions")
    previous: float | None = None
    baseline: float | None = None
    trend: Literal["up", "down", "flat", "new"] | None = None
    flag: Literal["rising", "high", "new"] | None = None


class NoteSummary(EventData):
    """A reporter's free-text note on a checklist item, as kept for the picture (after the personal-data
    guard). Who sees the text is a per-recipient rule: key functions and police read it, other actors
    only how many notes there are."""

    item: str = Field(description="checklist item id the note belongs to")
    label_sv: str = ""
    label_en: str = ""
    place: str | None = Field(default=None, description="place id the note was written for, if any")
    place_name: str | None = None
    text: str = Field(description="the note as the reporter wrote it", examples=["Ny tagg på garagelängan"])
    report_id: str = ""


class Completeness(EventData):
    """Reports expected against received for a picture."""

    expected: int = Field(default=0, description="reporters expected for the area and period")
    received: int = Field(default=0, description="distinct reporters with at least one counting report")
    on_time: int = 0
    late: int = 0
    nothing_to_report: int = 0
    rate: float = 0.0
    per_actor: dict[str, dict[str, int]] = Field(default_factory=dict)
    missing_reporters: list[str] = Field(default_factory=list)


class PictureData(EventData):
    """A situational picture (lägesbild) of an area and period, as frozen at an event."""

    municipality_id: str
    area_id: str
    area_name: str = ""
    period: str
    status: Literal["open", "published"]
    version: int = Field(description="0 while open; 1, 2, … once published")
    reports: int = Field(description="counting reports (several from one reporter each count; a correction replaces)")
    items: dict[str, ItemSummary] = Field(default_factory=dict)
    completeness: Completeness = Field(default_factory=Completeness)
    first_analysis: dict[str, str] = Field(default_factory=dict, description="language -> text")
    comments: list[dict[str, Any]] = Field(default_factory=list)
    notes: list[NoteSummary] = Field(default_factory=list, description="reporters' notes, for those who may read them")
    note_count: int = Field(default=0, description="how many notes the picture holds (shown to everyone)")
    kronoberg: dict[str, Any] | None = None


class PictureUpdated(EventData):
    """An open picture changed (a report arrived)."""

    picture: PictureData


class PicturePublished(EventData):
    """A picture was published (version 1) or revised (version ≥ 2)."""

    picture: PictureData
    revision: bool = False
    changes: list[str] = Field(default_factory=list, description="what changed against the previous version")
    published_by: str | None = None


# --- alerts and analyses -----------------------------------------------------------------

class AlertData(EventData):
    """An alert raised or resolved for an item in an area."""

    alert_id: str
    municipality_id: str
    area_id: str
    item: str
    kind: str = Field(description="e.g. flag:high, flag:rising, persistent")
    period: str
    severity: Literal["info", "warning", "critical"] = "warning"
    message: dict[str, str] = Field(default_factory=dict, description="language -> text")


class AnalysisPublished(EventData):
    """A strategic analysis (quarter or tertial) was compiled."""

    analysis_id: str
    municipality_id: str
    period: str
    summary: dict[str, str] = Field(default_factory=dict, description="language -> text")
    persistent_problems: list[dict[str, Any]] = Field(default_factory=list)
    report_path: str = Field(description="path of the readable report on the analysis service")


class OrgChanged(EventData):
    """The organisation changed: its new version and where to read the whole snapshot.

    The snapshot (``est_shared.org.OrgSnapshot`` as JSON) is the object ``snapshot_object`` of the
    JetStream object store ``EST_ORG_SNAPSHOTS``, ``snapshot_bytes`` long with the SHA-256 hex digest
    ``snapshot_sha256``: a large organisation does not fit into one message. Events written before the
    object store carry the snapshot inline in ``snapshot``; readers accept both.
    """

    version: int = Field(description="organisation version, 1, 2, …", examples=[7])
    snapshot: dict[str, Any] | None = Field(default=None, description="the snapshot inline (older events only)")
    snapshot_object: str | None = Field(default=None, description="object name in EST_ORG_SNAPSHOTS",
                                        examples=["v7.3a1f0c9e2b7d4f1a8c6e5d4b3a291807"])
    snapshot_sha256: str | None = Field(default=None, description="SHA-256 hex digest of the object's bytes")
    snapshot_bytes: int | None = Field(default=None, description="size of the object in bytes")
    changes: list[str] = Field(default_factory=list, description="what changed, at most the first "
                               "MAX_ORG_CHANGES (the full list is in the intake's history)",
                               examples=[["person anna removed"]])
    changes_total: int | None = Field(default=None, description="how many changes there were in all")


MAX_ORG_CHANGES = 100
"""Most changes an ``OrgChanged`` lists; a reorganisation can change thousands of things."""


EVENT_TYPES: dict[str, type[EventData]] = {
    "se.est.report.submitted": ReportSubmitted,
    "se.est.forfeiture.recorded": ForfeitureRecorded,
    "se.est.forfeiture.notification_due": ForfeitureNotificationDue,
    "se.est.picture.updated": PictureUpdated,
    "se.est.picture.published": PicturePublished,
    "se.est.alert.raised": AlertData,
    "se.est.alert.resolved": AlertData,
    "se.est.analysis.published": AnalysisPublished,
    "se.est.org.changed": OrgChanged,
}
