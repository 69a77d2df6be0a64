"""Deployment files: compose, Kubernetes manifests, Dockerfile, Grafana dashboard and Prometheus rules."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.support import DEPLOY, ROOT, SERVICES, nats_env, nats_server_bin, require_tool

PORTS = {"intake": 8000, "aggregator": 8001, "notifier": 8002, "analysis": 8003}

# Metrics that come from outside the services: Prometheus itself and prometheus-nats-exporter
# (-jsz=all, collector/jsz.go). Everything named est_* must be registered by a service.
EXTERNAL_METRICS = {
    "up",
    "jetstream_consumer_num_pending", "jetstream_consumer_num_ack_pending", "jetstream_consumer_num_redelivered",
    "jetstream_consumer_delivered_stream_seq", "jetstream_stream_total_messages", "jetstream_server_total_streams",
}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
                "group_right", "inf", "nan"}


# --- metric names ------------------------------------------------------------------------------------
def registered_metrics() -> set[str]:
    """Metric names the services register: `est_[a-z_]+` in their sources, templates expanded."""
    names: set[str] = set()
    files = [*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("shared/src/**/*.py")]
    for f in files:
        text = f.read_text()
        names |= set(re.findall(r"est_[a-z_]+", text))
        # f"est_{name}_org_version" and, with p = f"est_{service}", f"{p}_events_total"
        for suffix in re.findall(r'f"est_\{\w+\}_([a-z_]+)"', text):
            names |= {f"est_{s}_{suffix}" for s in SERVICES}
        if re.search(r'\w+ = f"est_\{\w+\}"', text):
            for suffix in re.findall(r'f"\{\w+\}_([a-z_]+)"', text):
                names |= {f"est_{s}_{suffix}" for s in SERVICES}
    return names


def promql_metrics(expr: str) -> set[str]:
    """Metric names used in a PromQL expression (functions, keywords and labels left out)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    out = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        if e[m.end():].lstrip().startswith("(") or m.group() in PROMQL_WORDS:
            continue
        out.add(m.group())
    return out


def unknown_metrics(exprs: list[str]) -> set[str]:
    """Names in the expressions that neither a service nor a known exporter provides."""
    known = registered_metrics()
    missing = set()
    for expr in exprs:
        for name in promql_metrics(expr):
            base = re.sub(r"_(bucket|sum|count|created)$", "", name)
            if name.startswith("est_"):
                if name not in known and base not in known:
                    missing.add(name)
            elif name not in EXTERNAL_METRICS:
                missing.add(name)
    return missing


def test_promql_metric_extraction_skips_functions_labels_and_keywords() -> None:
    expr = ('sum by (channel) (rate(est_notifier_delivery_attempts_total{result!="delivered"}[15m])) '
            '/ on () group_left max(up{job="est"}) > 0 and absent(jetstream_server_total_streams)')
    assert promql_metrics(expr) == {"est_notifier_delivery_attempts_total", "up", "jetstream_server_total_streams"}


def test_registered_metrics_include_literal_and_templated_names() -> None:
    names = registered_metrics()
    assert "est_intake_reports_accepted_total" in names
    assert "est_aggregator_dead_lettered_total" in names      # BusMetrics: f"{p}_dead_lettered_total"
    assert "est_notifier_org_version" in names                 # runtime: f"est_{name}_org_version"


# --- Grafana -----------------------------------------------------------------------------------------
def dashboard_panels() -> list[dict[str, Any]]:
    panels = []
    for f in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        dash = json.loads(f.read_text())
        for p in dash["panels"]:
            panels.append(p)
            panels.extend(p.get("panels", []))
    return panels


def test_grafana_dashboard_parses_and_uses_only_registered_metrics() -> None:
    panels = [p for p in dashboard_panels() if p["type"] != "row"]
    assert len(panels) >= 20
    exprs = []
    for p in panels:
        assert p["targets"], f"panel {p['title']!r} has no query"
        assert p["datasource"]["uid"] == "prometheus"
        exprs += [t["expr"] for t in p["targets"]]
    assert not unknown_metrics(exprs), f"dashboard metrics nobody exports: {sorted(unknown_metrics(exprs))}"
    used = set().union(*(promql_metrics(e) for e in exprs))
    for svc in SERVICES:        # every service has panels of its own
        assert any(n.startswith(f"est_{svc}_") for n in used), svc
    assert "jetstream_consumer_num_pending" in used       # consumer lag


def test_grafana_provisioning_points_at_the_dashboards_and_prometheus() -> None:
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert ds["datasources"][0]["uid"] == "prometheus"
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"
    prov = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/est.yml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


# --- Prometheus --------------------------------------------------------------------------------------
def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_alert_rules_cover_lag_dead_letters_failing_deliveries_missing_reports_and_down_services() -> None:
    rules = {r["alert"]: r for r in alert_rules()}
    for name in ("EstConsumerLagHigh", "EstConsumerStuck", "EstEventsDeadLettered", "EstDeadLettersGrowing",
                 "EstDeliveriesFailing", "EstDeliveriesDead", "EstReportsMissing", "EstAreaReportsMissing",
                 "EstServiceDown", "EstServiceReplicaDown", "EstNatsNodeDown", "EstOutboxEventsSetAside",
                 "EstOrgVersionBehind", "EstOrgFileSkipped"):
        assert name in rules, name
        assert rules[name]["labels"]["severity"] in {"critical", "warning", "info"}
        assert rules[name]["annotations"]["summary"]
    down = rules["EstServiceDown"]["expr"]
    assert all(f'service="{s}"' in down for s in SERVICES)


def test_alert_rules_use_only_registered_metrics() -> None:
    exprs = [r["expr"] for r in alert_rules()]
    assert not unknown_metrics(exprs), f"alert metrics nobody exports: {sorted(unknown_metrics(exprs))}"


def test_promtool_check_rules() -> None:
    promtool = require_tool("promtool", "Debian package prometheus")
    res = subprocess.run([promtool, "check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in res.stdout + res.stderr


@pytest.mark.parametrize("config", ["prometheus/prometheus.yml", "k8s/prometheus.yml"])
def test_promtool_check_config(config: str, tmp_path: Path) -> None:
    promtool = require_tool("promtool", "Debian package prometheus")
    # Both configs load alerts.yml from their own directory (in Kubernetes: the same ConfigMap).
    shutil.copy(DEPLOY / config, tmp_path / "prometheus.yml")
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    res = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    scrape = yaml.safe_load((DEPLOY / config).read_text())["scrape_configs"]
    jobs = {j["job_name"]: j for j in scrape}
    assert {"est", "nats"} <= set(jobs)
    ports = {c["port"] for c in jobs["est"]["dns_sd_configs"]}
    assert ports == {*PORTS.values(), 8080}       # the four services and the web front end


# --- compose -----------------------------------------------------------------------------------------
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_has_nats_cluster_postgres_two_replicas_per_service_prometheus_and_grafana() -> None:
    services = compose()["services"]
    for required in ("nats1", "nats2", "nats3", "postgres", "prometheus", "grafana", *SERVICES):
        assert required in services, required
    for node in ("nats1", "nats2", "nats3"):
        n = services[node]
        assert n["environment"]["NATS_SERVER_NAME"] == node
        assert "./nats:/etc/nats:ro" in n["volumes"]
        assert all(v in n["environment"] for v in ("EST_NATS_INTAKE_PASSWORD", "EST_NATS_ADMIN_PASSWORD"))
    for svc in SERVICES:
        s = services[svc]
        env = s["environment"]
        assert s["deploy"]["replicas"] == 2
        assert s["build"]["args"]["SERVICE"] == svc
        assert s["build"]["dockerfile"] == "deploy/Dockerfile" and s["build"]["context"] == ".."
        assert env["EST_STREAM_REPLICAS"] == "3"
        urls = env["EST_NATS_URL"].split(",")
        assert [u.split("@")[1] for u in urls] == ["nats1:4222", "nats2:4222", "nats3:4222"]
        assert all(u.startswith(f"tls://{svc}:${{EST_NATS_{svc.upper()}_PASSWORD}}@") for u in urls)
        db = env[f"EST_{svc.upper()}_DATABASE_URL"]
        assert db.startswith(f"postgresql+asyncpg://{svc}:") and db.endswith(f"@postgres/{svc}")
        assert env[f"EST_{svc.upper()}_PORT"] == str(PORTS[svc])
        assert env["EST_NATS_CA_FILE"] == "/etc/est/nats-ca.pem"
        assert "./nats/certs/ca.pem:/etc/est/nats-ca.pem:ro" in s["volumes"]
        assert s["depends_on"]["postgres"]["condition"] == "service_healthy"
    grafana = services["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana
    assert "./prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]


def test_compose_paths_exist() -> None:
    for svc in compose()["services"].values():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./") and "certs/" not in src:    # certificates are made by make-certs.sh
                assert (DEPLOY / src).exists(), src


def test_postgres_init_makes_one_database_and_role_per_service() -> None:
    script = (DEPLOY / "postgres" / "init-databases.sh").read_text()
    assert "for svc in intake aggregator notifier analysis" in script
    assert "CREATE DATABASE" in script and "OWNER" in script


def test_docker_compose_config_when_the_plugin_exists(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if not docker or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no docker compose plugin here; the pure-Python compose checks above ran")
    env = nats_env(POSTGRES_PASSWORD="x", EST_PII_KEY="x", GRAFANA_ADMIN_PASSWORD="x",
                   **{f"EST_PG_{s.upper()}_PASSWORD": "x" for s in SERVICES})
    res = subprocess.run([docker, "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "--quiet"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr


# --- image -------------------------------------------------------------------------------------------
def test_dockerfile_builds_one_image_per_service_with_uv_sync_package() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert "ARG SERVICE" in text
    assert re.search(r'uv sync --frozen --no-dev .*--package "est-\$\{SERVICE\}"', text)
    assert "COPY uv.lock" in text or "COPY pyproject.toml uv.lock" in text
    assert "COPY deploy/serve.py /app/serve.py" in text
    assert 'ENTRYPOINT ["python", "/app/serve.py"]' in text
    assert "USER est" in text


def load_serve() -> Any:
    spec = importlib.util.spec_from_file_location("est_deploy_serve", DEPLOY / "serve.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_entrypoint_picks_the_service_and_its_port(monkeypatch: pytest.MonkeyPatch) -> None:
    serve = load_serve()
    monkeypatch.setenv("EST_SERVICE", "notifier")
    assert serve.service_name([]) == "notifier"
    assert serve.service_name(["run", "analysis"]) == "analysis"
    assert serve.service_port("notifier") == 8002
    monkeypatch.setenv("EST_NOTIFIER_PORT", "9100")
    assert serve.service_port("notifier") == 9100
    with pytest.raises(SystemExit):
        serve.service_name(["billing"])


def test_entrypoint_adds_the_nats_ca_to_the_system_bundle(certs: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    serve = load_serve()
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    assert serve.trust_nats_ca(None) is None
    bundle = serve.trust_nats_ca(str(certs / "ca.pem"), out_dir=str(tmp_path))
    text = Path(bundle).read_text()
    assert (certs / "ca.pem").read_text().strip() in text
    assert text.count("BEGIN CERTIFICATE") > 1         # the public CAs are still trusted (webhooks)
    assert os.environ["SSL_CERT_FILE"] == bundle


# --- Kubernetes --------------------------------------------------------------------------------------
def manifests() -> list[dict[str, Any]]:
    docs = []
    for f in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if doc:
                assert doc.get("apiVersion") and doc.get("kind"), f
                assert doc["metadata"].get("name"), f
                docs.append(doc)
    return docs


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


def test_k8s_manifests_parse_and_have_the_expected_kinds() -> None:
    kinds = {d["kind"] for d in manifests()}
    assert {"Namespace", "ConfigMap", "Secret", "Service", "StatefulSet", "Deployment",
            "PodDisruptionBudget", "PersistentVolumeClaim"} <= kinds
    for d in manifests():
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "est", d["metadata"]["name"]


def test_k8s_nats_is_a_three_node_statefulset_with_headless_service_config_and_pdb() -> None:
    sts = by_kind("StatefulSet")["est-nats"]
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["serviceName"] == "est-nats-headless"
    headless = by_kind("Service")["est-nats-headless"]
    assert headless["spec"]["clusterIP"] == "None"
    conf = by_kind("ConfigMap")["est-nats-config"]["data"]["nats.conf"]
    assert "sync_interval: always" in conf and "include ./auth.conf" in conf
    for i in range(3):
        assert f"est-nats-{i}.est-nats-headless:6222" in conf
    assert by_kind("PodDisruptionBudget")["est-nats"]["spec"]["maxUnavailable"] == 1
    assert sts["spec"]["volumeClaimTemplates"]


def test_k8s_services_have_two_replicas_probes_resources_settings_and_pdb() -> None:
    deployments, services, pdbs = by_kind("Deployment"), by_kind("Service"), by_kind("PodDisruptionBudget")
    secrets, config = by_kind("Secret"), by_kind("ConfigMap")["est-config"]["data"]
    assert config["EST_STREAM_REPLICAS"] == "3"
    for svc in SERVICES:
        dep = deployments[f"est-{svc}"]
        assert dep["spec"]["replicas"] == 2
        pod = dep["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert {"cpu", "memory"} <= set(c["resources"]["requests"])
        assert {"cpu", "memory"} <= set(c["resources"]["limits"])
        refs = {r.get("configMapRef", r.get("secretRef"))["name"] for r in c["envFrom"]}
        assert {"est-config", f"est-{svc}"} <= refs
        secret = secrets[f"est-{svc}"]["stringData"]
        assert secret["EST_NATS_URL"].startswith(f"tls://{svc}:")
        assert f"EST_{svc.upper()}_DATABASE_URL" in secret
        assert services[svc]["spec"]["ports"][0]["port"] == PORTS[svc]
        assert services[f"{svc}-pods"]["spec"]["clusterIP"] == "None"     # Prometheus finds every replica
        assert pdbs[f"est-{svc}"]["spec"]["minAvailable"] == 1
        assert dep["spec"]["template"]["metadata"]["labels"] == pdbs[f"est-{svc}"]["spec"]["selector"]["matchLabels"]


def test_k8s_apply_script_makes_configmaps_from_the_tested_files() -> None:
    script = (DEPLOY / "k8s" / "apply.sh").read_text()
    for path in ("nats/auth.conf", "prometheus/alerts.yml", "grafana/dashboards/est-lagesbild.json",
                 "postgres/init-databases.sh", "k8s/prometheus.yml"):
        assert path.split("/")[-1] in script, path
        assert (DEPLOY / path).exists(), path


# --- NATS config -------------------------------------------------------------------------------------
def nats_check(conf_text: str, certs: Path, tmp_path: Path, cert_dir: str, **env: str) -> None:
    """Write the config with certificate and data paths pointing into tmp, run `nats-server -t`."""
    conf = conf_text.replace(cert_dir, str(certs)).replace("store_dir: /data", f"store_dir: {tmp_path / 'js'}")
    conf = conf.replace("/var/run/nats/nats.pid", str(tmp_path / "nats.pid"))
    (tmp_path / "nats.conf").write_text(conf)
    shutil.copy(DEPLOY / "nats" / "auth.conf", tmp_path / "auth.conf")
    res = subprocess.run([nats_server_bin(), "--config", str(tmp_path / "nats.conf"), "-t"],
                         capture_output=True, text=True, env=nats_env(**env), timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "is valid" in res.stdout + res.stderr


def test_compose_nats_config_is_accepted_by_nats_server(certs: Path, tmp_path: Path) -> None:
    text = (DEPLOY / "nats" / "nats.conf").read_text()
    assert "sync_interval: always" in text and "no_advertise: true" in text and "verify: true" in text
    nats_check(text, certs, tmp_path, "/etc/nats/certs", NATS_SERVER_NAME="nats1")


def test_k8s_nats_config_is_accepted_by_nats_server(certs: Path, tmp_path: Path) -> None:
    text = by_kind("ConfigMap")["est-nats-config"]["data"]["nats.conf"]
    nats_check(text, certs, tmp_path, "/etc/nats-certs", POD_NAME="est-nats-0")


def test_nats_config_refuses_to_start_without_a_password(certs: Path, tmp_path: Path) -> None:
    conf = (DEPLOY / "nats" / "nats.conf").read_text().replace("/etc/nats/certs", str(certs))
    (tmp_path / "nats.conf").write_text(conf.replace("store_dir: /data", f"store_dir: {tmp_path}"))
    shutil.copy(DEPLOY / "nats" / "auth.conf", tmp_path / "auth.conf")
    env = nats_env(NATS_SERVER_NAME="nats1")
    del env["EST_NATS_NOTIFIER_PASSWORD"]
    res = subprocess.run([nats_server_bin(), "--config", str(tmp_path / "nats.conf"), "-t"],
                         capture_output=True, text=True, env=env, timeout=30)
    assert res.returncode != 0 and "EST_NATS_NOTIFIER_PASSWORD" in res.stderr


# --- the web front end -------------------------------------------------------------------------------
def test_compose_runs_two_web_replicas_behind_the_edge_with_sessions_in_postgres() -> None:
    services = compose()["services"]
    web = services["web"]
    env = web["environment"]
    assert web["deploy"]["replicas"] == 2
    assert web["build"]["args"]["SERVICE"] == "web" and web["build"]["dockerfile"] == "deploy/Dockerfile"
    assert env["EST_WEB_PORT"] == "8080"
    for svc, port in PORTS.items():          # the gateway reaches every service by its compose name and port
        assert env[f"EST_WEB_{svc.upper()}_URL"] == f"http://{svc}:{port}"
        assert svc in services
    assert env["EST_WEB_SESSION_DATABASE_URL"] == "postgresql+asyncpg://web:${EST_PG_WEB_PASSWORD}@postgres/web"
    assert env["EST_WEB_SESSION_KEY"].startswith("${EST_WEB_SESSION_KEY:?")      # every replica seals alike
    assert env["EST_WEB_HTTPS"] == "true" and env["FORWARDED_ALLOW_IPS"] == "*"
    assert "EST_PG_WEB_PASSWORD" in services["postgres"]["environment"]
    init = (DEPLOY / "postgres" / "init-databases.sh").read_text()
    assert "for svc in intake aggregator notifier analysis web" in init
    edge = services["edge"]
    assert "8080:8080" in edge["ports"] and "web" in edge["depends_on"]
    nginx = (DEPLOY / "edge" / "nginx.conf").read_text()
    assert re.search(r"listen 8080; location / \{ set \$u http://web:8080;\s+proxy_pass \$u; \}", nginx)
    example = (DEPLOY / "env.example").read_text()
    for var in ("EST_PG_WEB_PASSWORD", "EST_WEB_SESSION_KEY", "EST_WEB_PUBLIC_ORIGINS"):
        assert f"\n{var}=" in example, var
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]
    est = next(j for j in scrape if j["job_name"] == "est")
    assert {"names": ["web"], "type": "A", "port": 8080, "refresh_interval": "15s"} in est["dns_sd_configs"]


def test_k8s_web_front_end_has_two_replicas_probes_its_secret_and_no_nats() -> None:
    dep = by_kind("Deployment")["est-web"]
    assert dep["spec"]["replicas"] == 2
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["EST_WEB_PORT"] == "8080" and env["EST_NATS_CA_FILE"] == ""
    for svc, port in PORTS.items():
        assert env[f"EST_WEB_{svc.upper()}_URL"] == f"http://{svc}:{port}"
    refs = {r.get("configMapRef", r.get("secretRef"))["name"] for r in c["envFrom"]}
    assert refs == {"est-config", "est-web"}
    secret = by_kind("Secret")["est-web"]["stringData"]
    assert secret["EST_WEB_SESSION_DATABASE_URL"].endswith("@postgres/web") and "EST_WEB_SESSION_KEY" in secret
    assert "EST_PG_WEB_PASSWORD" in by_kind("Secret")["est-postgres"]["stringData"]
    assert by_kind("Service")["web"]["spec"]["ports"][0]["port"] == 8080
    assert by_kind("Service")["web-pods"]["spec"]["clusterIP"] == "None"
    assert by_kind("PodDisruptionBudget")["est-web"]["spec"]["minAvailable"] == 1
    script = (DEPLOY / "k8s" / "apply.sh").read_text()
    assert "analysis web prometheus" in script and "for d in intake aggregator notifier analysis web" in script


def test_the_web_wheel_the_image_installs_holds_the_app(tmp_path: Path) -> None:
    """The image installs est-web as a wheel (``--no-editable``): the app's static files must be inside it."""
    uv = ROOT / ".venv" / "bin" / "uv"
    res = subprocess.run([str(uv if uv.exists() else "uv"), "build", "--wheel", "--package", "est-web",
                          "-o", str(tmp_path), "-q"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    (wheel,) = tmp_path.glob("est_web-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"est_web/static/{p.relative_to(ROOT / 'services/web/src/est_web/static')}"
               for p in (ROOT / "services/web/src/est_web/static").rglob("*") if p.is_file()}
    assert shipped and shipped <= names, sorted(shipped - names)


@pytest.mark.postgres
async def test_the_entrypoint_serves_the_web_app_with_sessions_in_postgres(postgres_url: str, tmp_path: Path) -> None:
    """``serve.py web`` as the image runs it (no CLI): the app shell and health answer, readiness says the
    services are not there yet, and the sign-in session table is made in PostgreSQL."""
    import httpx
    from cryptography.fernet import Fernet
    from est_shared.testing import free_port
    from sqlalchemy.ext.asyncio import create_async_engine

    from tests.support import eventually

    port = free_port()
    dead = free_port()
    env = {**os.environ, "EST_WEB_PORT": str(port), "EST_HOST": "127.0.0.1", "EST_DATA_DIR": str(tmp_path),
           "EST_WEB_SESSION_DATABASE_URL": postgres_url, "EST_WEB_SESSION_KEY": Fernet.generate_key().decode(),
           **{f"EST_WEB_{s.upper()}_URL": f"http://127.0.0.1:{dead}" for s in PORTS}}
    proc = await asyncio.create_subprocess_exec(sys.executable, str(DEPLOY / "serve.py"), "web", env=env,
                                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            async def up() -> bool:
                try:
                    return (await c.get("/healthz")).status_code == 200
                except httpx.HTTPError:
                    assert proc.returncode is None, "serve.py web stopped"
                    return False
            await eventually(up, timeout=60)
            app = await c.get("/app/")
            assert app.status_code == 200 and "<html" in app.text.lower()
            ready = await c.get("/readyz")
            assert ready.status_code == 503, ready.text
        engine = create_async_engine(postgres_url)
        try:
            async with engine.connect() as conn:
                tables = (await conn.exec_driver_sql(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all()
        finally:
            await engine.dispose()
        assert tables, "the web front end made no session table in PostgreSQL"
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)


def test_the_images_that_print_pdfs_hold_chromium() -> None:
    """The aggregator's and the analysis' PDFs are printed by headless Chromium: their images install it."""
    text = (DEPLOY / "Dockerfile").read_text()
    final = text.split("FROM ${PYTHON_IMAGE}\n", 1)[1]
    assert re.search(r'if \[ "\$SERVICE" = aggregator \] \|\| \[ "\$SERVICE" = analysis \]; then\s*\\\s*'
                     r"apt-get update && apt-get install -y --no-install-recommends chromium", final)
