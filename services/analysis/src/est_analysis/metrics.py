"""Prometheus metrics of the analysis service, on the runtime's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class AnalysisMetrics:
    """Counters, gauges and histograms named ``est_analysis_…``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.pictures = Counter("est_analysis_pictures_consumed_total",
                                "Published pictures consumed, by outcome (applied, stale, duplicate)",
                                ["outcome"], registry=registry)
        self.open_problems = Gauge("est_analysis_open_persistent_problems",
                                   "Persistent problems currently open", registry=registry)
        self.alerts = Counter("est_analysis_alerts_total", "Persistent-problem alerts queued, by kind",
                              ["kind"], registry=registry)
        self.analyses = Counter("est_analysis_analyses_compiled_total", "Strategic analyses compiled, by trigger",
                                ["trigger"], registry=registry)
        self.compile_seconds = Histogram("est_analysis_compile_duration_seconds",
                                         "Time to compile one strategic analysis", registry=registry,
                                         buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.measures = Counter("est_analysis_measures_changes_total", "Measures decided or re-decided",
                                ["action"], registry=registry)
