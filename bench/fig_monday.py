"""The production path in miniature: two aggregator replicas on PostgreSQL against one, a national Monday
on a 3-node NATS cluster with every service on PostgreSQL, and the municipality picture a key function
opens on Monday morning.

Replicas (figure "monday-replicas"): the same backlog of report events (500 areas) is stored by one
aggregator on a fresh PostgreSQL database, then by two replicas sharing a fresh database and the durable
consumer. The replicas are ready before the backlog is published, so both take part from the first event;
the rate is the backlog over the time from the first publish to the last event counted. Beside it each
process's CPU seconds (/proc/<pid>/stat: the aggregators, every ``postgres`` process of the machine and
the NATS server) and how busy the machine's cores were, so the row shows what limits the ratio.

National Monday ("monday-national"): 290 municipalities × 10 areas, 12 reporters per municipality who each
report every area of theirs: 34,800 reports in one hour, 9.7/s on average. The load is posted over HTTP
at 10× that (100 reports/s) for a bounded time (the row says how long) to an intake on PostgreSQL, on
a 3-node NATS cluster with R3 streams and two aggregator replicas sharing one PostgreSQL database.
202 → picture.updated is measured as in the latency figure (``common.latency_run``).

Municipality picture ("monday-municipality"): an aggregator holding 8 weeks of reports of the 50 areas
of one municipality (12 a week each); the week's common picture is fetched one request after another
by a key function and the p95 of the wall time is the figure.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml
from est_shared.natsserver import NatsCluster

from bench.common import (
    Env,
    Row,
    ServiceProcess,
    cpu_of,
    latency_run,
    machine_busy,
    metric_sum,
    pg_database,
    pids_named,
    publish_events,
    record,
    report_events,
)

REPLICA_AREAS = 500


def _stored(procs: list[ServiceProcess]) -> float:
    return sum(metric_sum(p.url, "est_aggregator_events_total", outcome="ok") for p in procs)


def _backlog_run(base: Path, name: str, replicas: int, n: int) -> tuple[float, dict[str, float], float]:
    """Events/s of ``replicas`` aggregators on one fresh PostgreSQL database storing a backlog of ``n``
    events, the CPU seconds of each kind of process meanwhile, and the share of the machine's cores busy."""
    env = Env(base, name)
    try:
        url = asyncio.run(pg_database())
        aggs = [env.service("aggregator", EST_AGGREGATOR_DATABASE_URL=url, EST_AGGREGATOR_AUTO_PUBLISH_INTERVAL="0")]
        for _ in range(replicas - 1):  # the first created the tables; the others join
            aggs.append(env.service("aggregator", EST_AGGREGATOR_DATABASE_URL=url,
                                    EST_AGGREGATOR_AUTO_PUBLISH_INTERVAL="0"))
        events = report_events(n, areas=REPLICA_AREAS)
        assert env.nats.proc is not None
        watched = {"aggregators": [p.proc.pid for p in aggs if p.proc],
                   "postgres": pids_named("postgres"), "nats": [env.nats.proc.pid]}
        cpu0 = {k: cpu_of(v) for k, v in watched.items()}
        busy0, total0 = machine_busy()
        t0 = time.perf_counter()
        asyncio.run(publish_events(env.nats.url, events))
        while _stored(aggs) < n:
            if time.perf_counter() - t0 > 600:
                raise TimeoutError("the aggregators did not store the backlog in time")
            time.sleep(0.2)
        dt = time.perf_counter() - t0
        watched["postgres"] = sorted(set(watched["postgres"]) | set(pids_named("postgres")))
        cpu = {k: cpu_of(v) - cpu0.get(k, 0.0) for k, v in watched.items()}
        busy1, total1 = machine_busy()
        cpu["machine"] = (busy1 - busy0) / os.sysconf("SC_CLK_TCK")  # busy core-seconds, everyone's
        return n / dt, cpu, (busy1 - busy0) / (total1 - total0)
    finally:
        env.close()


def fig_replicas(base: Path, quick: bool) -> None:
    n = 10_000 if quick else 40_000
    one, cpu1, busy1 = _backlog_run(base, "replicas-1", 1, n)
    two, cpu2, busy2 = _backlog_run(base, "replicas-2", 2, n)
    for label, rate, cpu, busy in (("one", one, cpu1, busy1), ("two", two, cpu2, busy2)):
        print(f"  {label}: {rate:,.0f} events/s; CPU s: " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
              + f"; machine {busy:.0%} busy", flush=True)
    record(Row(f"aggregator on PostgreSQL, one replica ({n:,} events, {REPLICA_AREAS} areas; "
               f"{_cpu_note(cpu1, busy1)})", one, "events/s", None, "", "(reported)"))
    record(Row(f"two aggregator replicas on PostgreSQL ÷ one ({_cpu_note(cpu2, busy2)})", two, "events/s", one,
               "one replica", "≥ 1.6×", two / one >= 1.6))


def _cpu_note(cpu: dict[str, float], busy: float) -> str:
    """What the CPU did while a backlog was stored: whether the cores were the limit, and whose they were."""
    ours = cpu["aggregators"] + cpu["postgres"] + cpu["nats"]
    capped = "capped by the 2 cores" if busy >= 0.9 else "cores not saturated"
    return (f"machine {busy:.0%} busy, {capped}; CPU s aggregators {cpu['aggregators']:.1f}, "
            f"postgres {cpu['postgres']:.1f}, NATS {cpu['nats']:.1f}, "
            f"other processes {max(0.0, cpu['machine'] - ours):.1f}")


# -- a national Monday --------------------------------------------------------------------------------

MUNICIPALITIES, AREAS_EACH, REPORTERS_EACH = 290, 10, 12
HOUR = MUNICIPALITIES * AREAS_EACH * REPORTERS_EACH  # reports in the hour


def national_org() -> dict[str, Any]:
    """290 municipalities of 10 areas each, 12 reporters per municipality reporting all its areas."""
    municipalities, people = [], []
    for m in range(MUNICIPALITIES):
        mid = f"k{m:03d}"
        municipalities.append({"id": mid, "name": f"Kommun {m}", "analysis_period": "tertial",
                               "areas": [{"id": f"{mid}-a{a}", "name": f"Område {a}", "cadence": "weekly",
                                          "places": ["torget"]} for a in range(AREAS_EACH)]})
        people += [{"id": f"{mid}-r{r}", "name": f"Rapportör {r}", "actor": "kommunen", "roles": ["reporter"],
                    "areas": [mid], "token": f"t-{mid}-r{r}"} for r in range(REPORTERS_EACH)]
    people.append({"id": "adm", "name": "Admin", "actor": "kommunen", "roles": ["admin"],
                   "areas": [m["id"] for m in municipalities], "token": "bench-admin"})
    return {"municipalities": municipalities,
            "actors": [{"id": "kommunen", "name": "Kommunen", "kind": "municipality"}], "people": people}


def national_report(i: int) -> tuple[str, str]:
    """The i-th report of the Monday: municipalities and their areas in turn, each reporter in turn."""
    m, rest = i % MUNICIPALITIES, i // MUNICIPALITIES
    area, reporter = rest % AREAS_EACH, (rest // AREAS_EACH) % REPORTERS_EACH
    return f"k{m:03d}-a{area}", f"t-k{m:03d}-r{reporter}"


def fig_national(base: Path, quick: bool) -> None:
    rate, seconds = 100, (30 if quick else 348)  # 10× the hour's average; full: all 34,800 reports
    workdir = base / "national"
    workdir.mkdir()
    org_file = workdir / "org.yaml"
    org_file.write_text(yaml.safe_dump(national_org(), allow_unicode=True))
    cluster = NatsCluster(workdir / "nats").start()
    urls = {svc: asyncio.run(pg_database()) for svc in ("intake", "aggregator")}
    common = {"EST_NATS_URL": cluster.url, "EST_STREAM_REPLICAS": "3", "EST_LOG_LEVEL": "WARNING"}
    procs: list[ServiceProcess] = []

    def proc(name: str, i: int, **extra: str) -> ServiceProcess:
        data = workdir / f"{name}{i}"
        data.mkdir()
        p = ServiceProcess(name, {**common, "EST_DATA_DIR": str(data), **extra}, workdir / f"{name}{i}.log")
        procs.append(p)
        return p

    try:
        intake = proc("intake", 0, EST_INTAKE_ORG_FILE=str(org_file), EST_INTAKE_DATABASE_URL=urls["intake"]).start()
        time.sleep(1.0)  # the organisation is on the bus before the aggregators start
        for i in range(2):  # the first creates the tables, then the second joins
            proc("aggregator", i, EST_AGGREGATOR_DATABASE_URL=urls["aggregator"],
                 EST_AGGREGATOR_AUTO_PUBLISH_INTERVAL="0").start()
        pids = [p.proc.pid for p in procs if p.proc]
        cpu0 = [cpu_of([pid]) for pid in pids]
        latencies, posted, areas = asyncio.run(latency_run(intake.url, cluster.url, rate=rate, seconds=seconds,
                                                           report=national_report, settle=60.0))
        cpu = [cpu_of([pid]) - before for pid, before in zip(pids, cpu0, strict=True)]
        names = [f"{p.name} {i or ''}".strip() if p.name == "aggregator" else p.name for i, p in enumerate(procs)]
        shown = {a for a, x in zip(areas, latencies, strict=True) if x != float("inf")}
        missed = {a for a, x in zip(areas, latencies, strict=True) if x == float("inf")}
        pictures = len(set(areas))
        latencies.sort()
        p50 = latencies[len(latencies) // 2] * 1000 if latencies else float("inf")
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000 if latencies else float("inf")
        print(f"  {posted} posted, {len(latencies)} accepted, {len(missed)} areas not shown; p50 {p50:.0f} ms; "
              "CPU s: " + ", ".join(f"{n} {v:.1f}" for n, v in zip(names, cpu, strict=True)), flush=True)
        what = (f"{posted:,} reports at {rate}/s ({seconds} s, 10× the hour's average) to {pictures:,} areas, "
                f"NATS cluster of 3, PostgreSQL, 2 aggregator replicas")
        record(Row(f"national Monday: pictures updated with every accepted report ({what})",
                   len(shown - missed), "pictures", pictures, "pictures reported", "all",
                   not missed and len(latencies) == posted))
        record(Row(f"national Monday: 202 → picture.updated p99 ({what})", p99, "ms", None, "", "< 1000 ms",
                   p99 < 1000 and len(latencies) == posted))
        per_1000 = sum(cpu) / max(1, len(latencies)) * 1000
        record(Row("national Monday: CPU seconds per 1,000 reports (intake + 2 aggregators: "
                   + ", ".join(f"{n} {v:.0f} s" for n, v in zip(names, cpu, strict=True)) + ")", per_1000, "CPU s",
                   None, "", "(reported)"))
        for n, p in zip(names, procs, strict=True):
            record(Row(f"national Monday: peak resident memory of {n}", p.rss_mb(), "MB", None, "", "< 200 MB",
                       p.rss_mb() < 200))
    finally:
        for p in procs:
            p.stop()
        cluster.stop()


# -- the municipality picture ---------------------------------------------------------------------------

WEEKS = [f"2026-W{w}" for w in range(33, 41)]


def fig_municipality(base: Path, quick: bool, db: str = "postgresql") -> None:
    gets = 100 if quick else 400
    env = Env(base, f"municipality-{db}")
    try:
        env.service("intake")
        time.sleep(1.0)  # the organisation is on the bus before the aggregator starts
        extra = {"EST_AGGREGATOR_AUTO_PUBLISH_INTERVAL": "0"}
        if db == "postgresql":
            extra["EST_AGGREGATOR_DATABASE_URL"] = asyncio.run(pg_database())
        agg = env.service("aggregator", **extra)
        n = 0
        for week in WEEKS:  # 12 reports of each of the 50 areas a week
            n += len(events := report_events(600, period=week))
            asyncio.run(publish_events(env.nats.url, events))
        t0 = time.perf_counter()
        while metric_sum(agg.url, "est_aggregator_events_total", outcome="ok") < n:
            if time.perf_counter() - t0 > 300:
                raise TimeoutError("aggregator did not consume in time")
            time.sleep(0.2)
        url = f"{agg.url}/v1/municipalities/bench/pictures/{WEEKS[-1]}"
        times = []
        with httpx.Client(headers={"Authorization": "Bearer bench-admin"}, timeout=30) as http:
            first = http.get(url)
            assert first.status_code == 200, first.text[:500]
            assert len(first.json()["areas"]) == 50, len(first.json()["areas"])
            for _ in range(gets):
                t = time.perf_counter()
                r = http.get(url, headers={"X-Request-Id": uuid.uuid4().hex})
                times.append(time.perf_counter() - t)
                assert r.status_code == 200
        times.sort()
        p50, p95 = times[len(times) // 2] * 1000, times[int(len(times) * 0.95)] * 1000
        print(f"  {gets} GETs: p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {times[-1] * 1000:.0f} ms", flush=True)
        record(Row(f"municipality picture GET, 50 areas × 8 weeks of reports, p95 ({db})", p95, "ms", None, "",
                   "< 100 ms", p95 < 100))
    finally:
        env.close()


FIGURES = {
    "monday-replicas": fig_replicas,
    "monday-national": fig_national,
    "monday-municipality": fig_municipality,
    "monday-municipality-sqlite": lambda b, q: fig_municipality(b, q, "sqlite"),
}
