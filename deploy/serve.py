"""Container entrypoint: run one EST service or the web front end (what ``est run SERVICE`` does, without the
CLI package).

The image has only its own service installed, so this file (stdlib + uvicorn + the service package)
stands in for the CLI. The service is chosen by ``EST_SERVICE`` (set at build time) or the first
argument; everything else comes from the service's own ``EST_*`` settings class.

``--healthcheck`` asks the running service's ``/healthz`` on localhost (Docker HEALTHCHECK).

``EST_NATS_CA_FILE`` (deployment only, not a service setting): a PEM file with the CA that signed
the NATS server certificates. It is appended to the system CA bundle and exported as
``SSL_CERT_FILE`` before anything connects, so nats-py (``tls://`` URLs or servers that require
TLS) trusts the cluster while HTTPS webhooks keep trusting the public CAs.
"""

from __future__ import annotations

import importlib
import os
import ssl
import sys
import tempfile
import urllib.request
from pathlib import Path

SERVICES = {"intake": 8000, "aggregator": 8001, "notifier": 8002, "analysis": 8003, "web": 8080}


def service_name(argv: list[str]) -> str:
    """The service to run: the first non-option argument, else EST_SERVICE."""
    args = [a for a in argv if not a.startswith("--")]
    if args and args[0] == "run":
        args = args[1:]
    name = args[0] if args else os.environ.get("EST_SERVICE", "")
    if name not in SERVICES:
        raise SystemExit(f"unknown service {name!r}; choose one of {', '.join(SERVICES)}")
    return name


def service_port(name: str) -> int:
    """The HTTP port the service listens on (EST_<SERVICE>_PORT or its default)."""
    return int(os.environ.get(f"EST_{name.upper()}_PORT", SERVICES[name]))


def trust_nats_ca(ca_file: str | None = None, out_dir: str | None = None) -> str | None:
    """Export SSL_CERT_FILE = system CAs + the NATS CA; returns the bundle path (None if no CA given)."""
    ca_file = ca_file or os.environ.get("EST_NATS_CA_FILE")
    if not ca_file:
        return None
    paths = ssl.get_default_verify_paths()
    system = [p for p in (paths.cafile, paths.openssl_cafile) if p and Path(p).is_file()]
    parts = [Path(system[0]).read_text()] if system else []
    parts.append(Path(ca_file).read_text())
    fd, bundle = tempfile.mkstemp(prefix="est-ca-", suffix=".pem", dir=out_dir)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(parts))
    os.environ["SSL_CERT_FILE"] = bundle
    return bundle


def healthcheck(name: str) -> int:
    """0 when the local service answers /healthz with 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{service_port(name)}/healthz", timeout=2) as resp:
            return 0 if resp.status == 200 else 1
    except OSError:
        return 1


def main(argv: list[str]) -> int:
    """Run the service in the foreground (or check its health)."""
    name = service_name(argv)
    if "--healthcheck" in argv:
        return healthcheck(name)
    trust_nats_ca()
    import uvicorn

    module = importlib.import_module(f"est_{name}.app")
    settings = module.Settings()
    app = module.create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False,
                lifespan="on", timeout_graceful_shutdown=10, proxy_headers=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
