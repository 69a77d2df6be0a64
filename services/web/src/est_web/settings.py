"""Settings of the web front end."""

from __future__ import annotations

from pathlib import Path

from est_shared.settings import ServiceSettings, service_field
from pydantic import Field, SecretStr


class WebSettings(ServiceSettings):
    """The web front end serves the app and forwards /api/<service>/v1/… to the services."""

    service: str = "web"
    port: int = service_field("web", "port", 8080, "HTTP port of the web front end")
    intake_url: str = service_field("web", "intake_url", "http://127.0.0.1:8000", "intake base URL")
    aggregator_url: str = service_field("web", "aggregator_url", "http://127.0.0.1:8001",
                                        "aggregator base URL")
    notifier_url: str = service_field("web", "notifier_url", "http://127.0.0.1:8002",
                                      "notifier base URL")
    analysis_url: str = service_field("web", "analysis_url", "http://127.0.0.1:8003",
                                      "analysis base URL")
    max_body_bytes: int = service_field(
        "web", "max_body_bytes", 2_000_000, "largest request body forwarded to a service (413 above), the "
        "services' own limit; paths in body_limits have their own")
    body_limits: dict[str, int] = service_field(
        "web", "body_limits", {"intake/v1/admin/org": 20_000_000},
        "JSON object: '<service>/<path prefix>' -> largest body in bytes for it (the longest matching prefix "
        "wins); keep it equal to the service's own limit for that path")
    https: bool = service_field(
        "web", "https", False, "the public address is HTTPS at a proxy in front that does not send "
        "X-Forwarded-Proto: send Strict-Transport-Security on every answer")
    hsts_max_age: int = service_field(
        "web", "hsts_max_age", 31_536_000, "max-age of Strict-Transport-Security in seconds (0: never sent)")

    session_database_url: str = service_field(
        "web", "session_database_url", "", "SQLAlchemy async URL of the sign-in sessions; empty = SQLite file "
        "web-sessions.db in the data dir (PostgreSQL for several replicas)")
    session_key: SecretStr | None = service_field(
        "web", "session_key", None, "key(s) sealing the sessions' credentials, in the EST_PII_KEY format; empty = a "
        "key file web-session/pii.key in the data dir (replicas need the same key)")
    session_idle_seconds: int = service_field(
        "web", "session_idle_seconds", 8 * 3600, "a session unused this long ends")
    session_absolute_seconds: int = service_field(
        "web", "session_absolute_seconds", 7 * 24 * 3600, "a session ends this long after sign-in, used or not")
    cookie_secure: bool = service_field(
        "web", "cookie_secure", False, "always mark the session cookie Secure (it is anyway when the request came "
        "over HTTPS, directly or per X-Forwarded-Proto, or EST_WEB_HTTPS is set)")
    public_origins: str = service_field(
        "web", "public_origins", "", "comma-separated origins the app is served at (https://est.example.se); a "
        "state-changing request with another Origin is refused; empty = the request's own scheme and Host")
    sign_in_max_failures: int = service_field(
        "web", "sign_in_max_failures", 5, "failed sign-ins from one client address within the window before 429")
    sign_in_window_seconds: int = service_field(
        "web", "sign_in_window_seconds", 300, "the window of sign_in_max_failures, seconds")
    demo_sign_in: bool = service_field(
        "web", "demo_sign_in", False, "offer signing in as the demo organisation's people (est up --demo only)")
    demo_org_file: Path | None = service_field(
        "web", "demo_org_file", None, "the demo organisation's YAML file (people, roles and tokens)")

    oidc_client_id: str = Field(default="", description="the web front end's client id at the OpenID provider "
                                "(EST_OIDC_CLIENT_ID); with oidc_issuer: sign-in with the organisation's account")
    oidc_client_secret: SecretStr | None = Field(default=None, description="its client secret (confidential client, "
                                                 "client_secret_basic); empty: a public client with PKCE only")
    oidc_scopes: str = Field(default="openid email offline_access", description="scopes asked for at sign-in")
    oidc_redirect_uri: str = Field(default="", description="the callback registered at the provider; empty: "
                                   "<origin>/session/oidc/callback")
    oidc_resource: str = Field(default="", description="resource indicator (RFC 8707) sent at sign-in, for "
                               "providers that need one to issue an access token for the API; empty: none")

    def origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.public_origins.split(",") if o.strip()]

    def upstreams(self) -> dict[str, str]:
        return {"intake": self.intake_url, "aggregator": self.aggregator_url, "notifier": self.notifier_url,
                "analysis": self.analysis_url}
