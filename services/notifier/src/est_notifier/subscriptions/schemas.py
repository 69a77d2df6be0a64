"""Pydantic models of subscriptions' HTTP bodies and of subscriptions declared in the organisation file."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from est_shared.freetext import free_text_errors, has_control_characters
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from est_notifier.subscriptions.domain import WEBHOOK_URL_MAX, webhook_url_problem

EventName = Literal["picture.published", "alert.raised", "alert.resolved", "analysis.published",
                    "forfeiture.notification_due"]
"""``forfeiture.notification_due`` carries a young person's personal data: only someone with the role
social_services in the subscription's municipality may subscribe to it (403 otherwise)."""
ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScopeIn(_In):
    municipality_id: str = Field(pattern=ID, description="Municipality id", examples=["vaxjo"])
    area_ids: list[Annotated[str, Field(pattern=ID)]] | None = Field(
        default=None, max_length=500, description="Areas; left out = every area of the municipality you may see",
        examples=[["araby"]])


def _safe_name(v: str) -> str:
    """A subscription's name is shown to others (the ledger, e-mails to the owner's colleagues): no personal data,
    no control characters."""
    errors = free_text_errors({"name": v})
    if errors:
        raise ValueError(errors[0]["message"])
    return v


def _plain_address(v: str) -> str:
    if has_control_characters(v):
        raise ValueError("adressen innehåller ett kontrolltecken / the address contains a control character")
    return v


SafeName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_safe_name)]


def _webhook_url(v: str) -> str:
    problem = webhook_url_problem(v)
    if problem is not None:
        raise ValueError(f"{problem[0]} / {problem[1]}")
    return v


WebhookUrl = Annotated[str, Field(max_length=WEBHOOK_URL_MAX), AfterValidator(_webhook_url)]


class WebhookChannel(_In):
    type: Literal["webhook"]
    url: WebhookUrl = Field(description="http(s) URL that receives the CloudEvent POSTs: a public internet "
                            "address (internal ones only where EST_NOTIFIER_WEBHOOK_ALLOW allows them), without "
                            "user name or password", examples=["https://example.org/est"])
    secret: str = Field(min_length=1, max_length=500, description="HMAC-SHA256 key for X-EST-Signature",
                        examples=["s3cret"])


class WebhookChannelPatch(WebhookChannel):
    secret: str | None = Field(default=None, min_length=1, max_length=500,  # type: ignore[assignment]
                               description="New secret; left out keeps the old one")


class EmailChannel(_In):
    type: Literal["email"]
    to: Annotated[str, AfterValidator(_plain_address)] = Field(
        max_length=320, pattern=r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$", description="Recipient address",
        examples=["a@example.org"])


Channel = Annotated[WebhookChannel | EmailChannel, Field(discriminator="type")]
ChannelPatch = Annotated[WebhookChannelPatch | EmailChannel, Field(discriminator="type")]


class SubscriptionIn(_In):
    name: SafeName = Field(examples=["Växjöhem driftcentral"])
    scope: ScopeIn
    events: list[EventName] = Field(min_length=1, examples=[["picture.published", "alert.raised"]])
    channel: Channel
    digest: Literal["immediate", "period"] = Field(
        default="immediate", description="immediate: one message per event; period: one per period close")
    language: Literal["sv", "en"] = "sv"
    min_severity: Literal["info", "warning", "critical"] | None = Field(
        default=None, description="Alerts below this severity are not sent")


class SubscriptionPatch(_In):
    name: SafeName | None = None
    scope: ScopeIn | None = None
    events: list[EventName] | None = Field(default=None, min_length=1)
    channel: ChannelPatch | None = None
    digest: Literal["immediate", "period"] | None = None
    language: Literal["sv", "en"] | None = None
    min_severity: Literal["info", "warning", "critical"] | None = None
    paused: bool | None = Field(default=None, description="true pauses, false resumes", examples=[True])


class HandoverIn(_In):
    to: str = Field(pattern=ID, description="person id of the new owner, who may hold the subscription",
                    examples=["per"])


class RestoreIn(_In):
    to: str | None = Field(default=None, pattern=ID, description="person id of the owner to restore it to; left out: "
                           "the owner's successor, else the owner if still in the organisation", examples=["per"])


class ScopeOut(BaseModel):
    municipality_id: str
    area_ids: list[str] = Field(description="Empty = every area of the municipality")


class SubscriptionOut(BaseModel):
    id: str
    name: str
    owner_id: str
    owner_name: str | None = Field(default=None, description="the owner's name as the organisation last held it",
                                   examples=["Per Persson"])
    scope: ScopeOut
    events: list[str]
    channel: dict[str, Any] = Field(description="The channel; a webhook secret is never shown (secret_set)")
    digest: str
    language: str
    min_severity: str | None
    paused: bool
    paused_reason: str | None
    status: str = Field(description="active | paused | ended (ended for good: the owner left the organisation "
                        "or lost the areas; see ended_reason)")
    ended_at: datetime | None = None
    ended_reason: str | None = Field(default=None, examples=["subscription ended: owner removed from the organisation"])
    source: str = Field(description="api, or org when declared in the organisation")
    created_at: datetime
    updated_at: datetime


class DeclaredChannelWebhook(_In):
    type: Literal["webhook"]
    url: WebhookUrl
    secret: str | None = Field(default=None, min_length=1, max_length=500,
                               description="HMAC key in clear (demo files); prefer secret_env")
    secret_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$",
                                   description="name of an environment variable of the notifier holding the key")


DeclaredChannel = Annotated[DeclaredChannelWebhook | EmailChannel, Field(discriminator="type")]


class DeclaredSubscription(_In):
    """One entry of the organisation file's top-level ``subscriptions:`` list.

    Like the body of ``POST /v1/subscriptions`` plus ``id`` (stable, unique in the file) and ``owner``
    (the person id whose areas bound the scope and who sees its ledger).
    """

    id: str = Field(pattern=ID, description="stable id of the declaration", examples=["vaxjohem-drift"])
    owner: str = Field(pattern=ID, description="person id of the owner", examples=["anna"])
    name: SafeName
    scope: ScopeIn
    events: list[EventName] = Field(min_length=1)
    channel: DeclaredChannel
    digest: Literal["immediate", "period"] = "immediate"
    language: Literal["sv", "en"] = "sv"
    min_severity: Literal["info", "warning", "critical"] | None = None
