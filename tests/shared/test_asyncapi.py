"""Each service's ``/asyncapi.json`` names every channel it consumes and publishes, each with the CloudEvents
envelope and the real schema of its event's data (never FastStream's ``EmptyPayload``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from est_aggregator.app import Settings as AggregatorSettings
from est_aggregator.app import create_app as aggregator_app
from est_analysis.app import Settings as AnalysisSettings
from est_analysis.app import create_app as analysis_app
from est_intake.app import create_app as intake_app
from est_intake.settings import IntakeSettings
from est_notifier.app import Settings as NotifierSettings
from est_notifier.app import create_app as notifier_app
from est_shared.events import (
    AlertData,
    AnalysisPublished,
    EventData,
    ForfeitureNotificationDue,
    ForfeitureRecorded,
    OrgChanged,
    PicturePublished,
    PictureUpdated,
    ReportSubmitted,
    envelope_of,
)

RECEIVE, SEND = "receive", "send"
ORG = ("est.org.changed", OrgChanged)

EXPECTED: dict[str, set[tuple[str, str, type[EventData]]]] = {
    "intake": {(RECEIVE, *ORG), (SEND, *ORG),
               (SEND, "est.report.submitted.{municipality}.{area}", ReportSubmitted),
               (SEND, "est.forfeiture.recorded.{municipality}", ForfeitureRecorded),
               (SEND, "est.forfeiture.notification_due.{municipality}", ForfeitureNotificationDue)},
    "aggregator": {(RECEIVE, *ORG), (RECEIVE, "est.report.submitted.>", ReportSubmitted),
                   (RECEIVE, "est.forfeiture.recorded.>", ForfeitureRecorded),
                   (SEND, "est.picture.updated.{municipality}.{area}", PictureUpdated),
                   (SEND, "est.picture.published.{municipality}.{area}", PicturePublished),
                   (SEND, "est.alert.raised.{municipality}.{area}", AlertData),
                   (SEND, "est.alert.resolved.{municipality}.{area}", AlertData)},
    "notifier": {(RECEIVE, *ORG), (RECEIVE, "est.picture.published.*.*", PicturePublished),
                 (RECEIVE, "est.picture.updated.*.*", PictureUpdated), (RECEIVE, "est.alert.*.*.*", AlertData),
                 (RECEIVE, "est.analysis.published.*", AnalysisPublished),
                 (RECEIVE, "est.forfeiture.notification_due.*", ForfeitureNotificationDue)},
    "analysis": {(RECEIVE, *ORG), (RECEIVE, "est.picture.published.*.>", PicturePublished),
                 (SEND, "est.alert.raised.{municipality}.{area}", AlertData),
                 (SEND, "est.alert.resolved.{municipality}.{area}", AlertData),
                 (SEND, "est.analysis.published.{municipality}", AnalysisPublished)},
}


def _apps(tmp_path: Path) -> dict[str, Any]:
    common: dict[str, Any] = {"nats_url": "nats://127.0.0.1:1", "log_level": "WARNING"}  # never connected
    return {
        "intake": intake_app(IntakeSettings(**common, data_dir=tmp_path / "intake")),
        "aggregator": aggregator_app(AggregatorSettings(**common, data_dir=tmp_path / "aggregator")),
        "notifier": notifier_app(NotifierSettings(**common, data_dir=tmp_path / "notifier")),
        "analysis": analysis_app(AnalysisSettings(**common, data_dir=tmp_path / "analysis", browser="none")),
    }


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _channels(doc: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(action, address, payload schema name) of every operation."""
    out = set()
    for op in doc["operations"].values():
        channel = _resolve(doc, op["channel"]["$ref"])
        for message_ref in op["messages"]:
            message = _resolve(doc, message_ref["$ref"])
            if "$ref" in message:
                message = _resolve(doc, message["$ref"])
            out.add((op["action"], channel["address"], unquote(message["payload"]["$ref"].rsplit("/", 1)[1])))
    return out


@pytest.mark.parametrize("service", sorted(EXPECTED))
async def test_every_channel_is_documented_with_its_events_schema(service: str, tmp_path: Path) -> None:
    app = _apps(tmp_path)[service]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        doc = (await client.get("/asyncapi.json")).json()
    assert doc["asyncapi"].startswith("3.")
    assert "EmptyPayload" not in str(doc)
    found = _channels(doc)
    expected = {(action, address, f"CloudEvent[{data.__name__}]") for action, address, data in EXPECTED[service]}
    assert found == expected
    schemas = doc["components"]["schemas"]
    for _, _, data in EXPECTED[service]:
        envelope = schemas[f"CloudEvent[{data.__name__}]"]
        assert set(envelope["properties"]) == set(envelope_of(data).model_fields)  # the CloudEvents envelope
        assert envelope["properties"]["data"]["$ref"].endswith(f"/{data.__name__}")
        assert set(schemas[data.__name__]["properties"]) == set(data.model_fields)  # the data, field for field
