"""Settings of the web front end."""

from __future__ import annotations

from est_shared.settings import ServiceSettings, service_field


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

    def upstreams(self) -> dict[str, str]:
        return {"intake": self.intake_url, "aggregator": self.aggregator_url, "notifier": self.notifier_url,
                "analysis": self.analysis_url}
