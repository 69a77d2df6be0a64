"""NATS subjects and JetStream stream definitions (CONTRACT.md, "Events on NATS JetStream")."""

from __future__ import annotations

from dataclasses import dataclass, field

DLQ_PREFIX = "est.dlq"


def report_submitted(municipality: str, area: str) -> str:
    return f"est.report.submitted.{municipality}.{area}"


def forfeiture_recorded(municipality: str) -> str:
    return f"est.forfeiture.recorded.{municipality}"


def picture_updated(municipality: str, area: str) -> str:
    return f"est.picture.updated.{municipality}.{area}"


def picture_published(municipality: str, area: str) -> str:
    return f"est.picture.published.{municipality}.{area}"


def alert_raised(municipality: str, area: str) -> str:
    return f"est.alert.raised.{municipality}.{area}"


def alert_resolved(municipality: str, area: str) -> str:
    return f"est.alert.resolved.{municipality}.{area}"


def analysis_published(municipality: str) -> str:
    return f"est.analysis.published.{municipality}"


ORG_CHANGED = "est.org.changed"


def dead_letter(service: str, original_subject: str) -> str:
    """Where a consumer puts an event it cannot process (poison)."""
    return f"{DLQ_PREFIX}.{service}.{original_subject}"


@dataclass(frozen=True)
class StreamDef:
    """A JetStream stream: name, subjects, and how long it keeps events."""

    name: str
    subjects: list[str] = field(default_factory=list)
    max_age_seconds: float = 0  # 0 = keep forever: the streams are the event history
    duplicate_window_seconds: float = 120


REPORTS = StreamDef("EST_REPORTS", ["est.report.>", "est.forfeiture.>"])
PICTURES = StreamDef("EST_PICTURES", ["est.picture.>"])
ALERTS = StreamDef("EST_ALERTS", ["est.alert.>"])
ANALYSES = StreamDef("EST_ANALYSES", ["est.analysis.>"])
ORG = StreamDef("EST_ORG", ["est.org.>"])
DLQ = StreamDef("EST_DLQ", [f"{DLQ_PREFIX}.>"], max_age_seconds=90 * 24 * 3600)

STREAMS: tuple[StreamDef, ...] = (REPORTS, PICTURES, ALERTS, ANALYSES, ORG, DLQ)


def stream_for(subject: str) -> str:
    """The stream that captures a subject."""
    for s in STREAMS:
        for pattern in s.subjects:
            if subject.startswith(pattern.removesuffix(">")):
                return s.name
    raise KeyError(f"no stream captures {subject}")
