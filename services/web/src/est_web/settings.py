"""Settings of the web front end."""

from __future__ import annotations

from est_shared.settings import ServiceSettings, service_field


class WebSettings(ServiceSettings):
    """The web front end serves the app and forwards /api/<service>/… to the services."""

    service: str = "web"
    port: int = service_field("web", "port", 8080, "HTTP port of the web front end")  # type: ignore[assignment]
    intake_url: str = service_field("web", "intake_url", "http://127.0.0.1:8000", "intake base URL")  # type: ignore[assignment]
    aggregator_url: str = service_field("web", "aggregator_url", "http://127.0.0.1:8001",  # type: ignore[assignment]
                                        "aggregator base URL")
    notifier_url: str = service_field("web", "notifier_url", "http://127.0.0.1:8002",  # type: ignore[assignment]
                                      "notifier base URL")
    analysis_url: str = service_field("web", "analysis_url", "http://127.0.0.1:8003",  # type: ignore[assignment]
                                      "analysis base URL")

    def upstreams(self) -> dict[str, str]:
        return {"intake": self.intake_url, "aggregator": self.aggregator_url, "notifier": self.notifier_url,
                "analysis": self.analysis_url}
