"""deploy/grafana/postline.json, structurally: a Grafana dashboard (JSON, uid, schema version,
panels with positions and Prometheus targets) whose every expression parses as PromQL
(promql-parser) and names only metrics Postline exports: those of shared/metrics.py and the
shaping metrics of issue 31 (docs/analytics.md)."""
from __future__ import annotations

import json
from pathlib import Path

import promql_parser
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Summary

import shared.metrics as metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "postline.json"
SHAPING = {"postline_shaping_rate", "postline_shaping_state", "postline_shaping_queue_depth",
           "postline_shaping_connections", "postline_ip_warmup_sent_today"}  # issue 31's names


def exported() -> set[str]:
    """Every series name the metrics of shared/metrics.py expose (a histogram's _bucket, _sum, _count…)."""
    names: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, (Counter, Gauge, Histogram, Summary)):
            for family in value.describe():
                base = family.name
                suffixes = {Counter: ("_total", "_created"), Histogram: ("_bucket", "_sum", "_count", "_created"),
                            Summary: ("_sum", "_count", "_created"), Gauge: ("",)}[type(value)]
                names.update(base + s for s in suffixes)
    return names


def metric_names(node: object) -> set[str]:
    """The metric names a parsed PromQL expression selects."""
    if isinstance(node, promql_parser.VectorSelector):
        return {node.name}
    if isinstance(node, promql_parser.MatrixSelector):
        return metric_names(node.vector_selector)
    found: set[str] = set()
    for attr in ("expr", "lhs", "rhs", "param"):
        if hasattr(node, attr) and getattr(node, attr) is not None:
            found |= metric_names(getattr(node, attr))
    for arg in getattr(node, "args", None) or []:
        found |= metric_names(arg)
    return found


def test_the_dashboard_is_grafana_json_with_panels():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    assert dash["templating"]["list"][0]["type"] == "datasource"
    panels = dash["panels"]
    assert len(panels) >= 6 and len({p["id"] for p in panels}) == len(panels)
    for p in panels:
        assert p["type"] in ("timeseries", "state-timeline", "stat", "gauge", "table") and p["title"]
        assert set(p["gridPos"]) == {"h", "w", "x", "y"} and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        assert p["targets"] and all(t["expr"] and t["refId"] for t in p["targets"])


def test_every_expression_parses_and_names_an_exported_metric():
    dash = json.loads(DASHBOARD.read_text())
    known = exported() | SHAPING
    used: set[str] = set()
    for p in dash["panels"]:
        for t in p["targets"]:
            names = metric_names(promql_parser.parse(t["expr"]))
            assert names, t["expr"]
            assert names <= known, f"{p['title']}: {names - known} is not a metric Postline exports"
            used |= names
    # what the product asks of it: per-provider deferrals, latency, queue depth and throttling state
    assert {"postline_relay_deferrals_total", "postline_delivery_latency_seconds_bucket",
            "postline_shaping_queue_depth", "postline_shaping_state"} <= used


def test_the_provider_metrics_are_registered():
    """The two metrics of issue 33 are in the default registry /metrics serves."""
    names = {m.name for m in REGISTRY.collect()}
    assert {"postline_relay_deferrals", "postline_delivery_latency_seconds"} <= names
