"""Settings base: every service reads ``EST_*`` environment variables (and ``.env``) through one class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from est_shared.oidc import DEFAULT_ALGORITHMS, LEEWAY, OidcConfig
from est_shared.periods import DEFAULT_TIMEZONE


def service_field(service: str, name: str, default: Any, description: str = "") -> Any:
    """A field read from ``EST_<SERVICE>_<NAME>`` (also settable by its field name in code).

    Typed ``Any`` as pydantic's own ``Field`` is, so that ``port: int = service_field(...)`` type-checks."""
    env = f"EST_{service.upper()}_{name.upper()}"
    return Field(default=default, validation_alias=AliasChoices(env, name), description=description)


class ServiceSettings(BaseSettings):
    """What every service needs; each service subclasses it and adds its own fields."""

    model_config = SettingsConfigDict(env_prefix="EST_", env_file=".env", extra="ignore",
                                      populate_by_name=True)

    service: str = "est"
    nats_url: str = Field(default="nats://127.0.0.1:4222", description="NATS server(s), comma-separated")
    timezone: str = Field(default=DEFAULT_TIMEZONE, description="municipal time for periods and deadlines")
    data_dir: Path = Field(default=Path("var"), description="where SQLite files and the mail outbox live")
    log_level: str = Field(default="INFO")
    host: str = Field(default="127.0.0.1", description="HTTP bind address")
    stream_replicas: int = Field(default=1, description="JetStream replicas for the streams (3 in a cluster)")
    consumer_max_deliver: int = Field(default=8, description="deliveries before an event is dead-lettered")
    org_poll_interval: float = Field(default=15.0, gt=0, description="seconds between looks at the newest "
                                     "organisation version on the stream (besides the pushed est.org.changed)")
    pii_key: SecretStr | None = Field(default=None, description="key(s) for personal-data encryption")
    gc_tuning: bool = Field(default=True, description="freeze the start-up heap and collect less often "
                                                      "(est_shared.runtime.tune_gc)")
    http_header_timeout: float = Field(default=10.0, gt=0, description="seconds a client has to send a complete "
                                       "request head (line and headers); then the connection is closed (408)")
    http_connections_per_client: int = Field(default=100, ge=0, description="most open connections from one client "
                                             "address (0: no limit); more are refused with 429")
    http_trusted_proxies: str = Field(default="127.0.0.1,::1", description="comma-separated addresses of proxies in "
                                      "front (an ingress, the web gateway): their connections carry many clients, "
                                      "so the per-client limit does not apply to them, and their X-Forwarded-For "
                                      "and X-Forwarded-Proto are believed")
    oidc_issuer: str = Field(default="", description="issuer URL of the OpenID provider whose JWT access tokens "
                             "are accepted beside the organisation's tokens (https://, or http:// on loopback); "
                             "empty: none")
    oidc_audience: str = Field(default="", description="the audience (resource indicator) the access tokens must "
                               "name in aud; needed with oidc_issuer")
    oidc_person_claim: str = Field(default="email", description="the token claim that names the person: the "
                                   "organisation's person whose email equals it (any case) is the caller")
    oidc_algorithms: str = Field(default=",".join(DEFAULT_ALGORITHMS), description="comma-separated signature "
                                 "algorithms accepted (asymmetric only: never none or HS*)")
    oidc_leeway: float = Field(default=LEEWAY, ge=0, le=300, description="seconds of clock skew allowed on exp "
                               "and nbf")

    @model_validator(mode="after")
    def _oidc_settings_work(self) -> ServiceSettings:
        OidcConfig.from_settings(self)  # refuses an http:// issuer off loopback, HS* or none, a missing audience
        return self

    def sqlite_url(self, name: str) -> str:
        """The embedded default database of a service: a SQLite file in the data dir."""
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{name}.db').resolve()}"

    @property
    def nats_servers(self) -> list[str]:
        return [s.strip() for s in self.nats_url.split(",") if s.strip()]
