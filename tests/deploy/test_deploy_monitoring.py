"""The alerts, the Grafana dashboard and the prometheus-adapter rules only use metrics and labels the services
really export, and the dashboard shows what operators need."""

from __future__ import annotations

import json
import re
from typing import Any

import grpc
import pytest
import yaml
from deploy_support import K8S, all_exported_metrics, find, metric_names_in, render

DASHBOARD = K8S / "base" / "monitoring" / "grafana-dashboard.json"
ADAPTER = K8S / "prometheus-adapter" / "values.yaml"
# Metrics of Prometheus itself and kube-state-metrics (kube-prometheus-stack) the rules may use.
EXTERNAL = re.compile(r"^(up|kube_[a-z_]+)$")
_SELECTOR = re.compile(r"(\b[a-z_][a-z0-9_]*)\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def _rule_expressions() -> list[str]:
    rule = find(render("base"), "PrometheusRule", "tfic")
    return [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _dashboard_expressions() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", [])]


def _adapter_expressions() -> list[str]:
    rules = yaml.safe_load(ADAPTER.read_text())["rules"]["custom"]
    return [r["seriesQuery"] for r in rules]


def _keda_expressions() -> list[str]:
    scaled = find(render("overlays/keda"), "ScaledObject", "tfic-inference")
    return [t["metadata"]["query"] for t in scaled["spec"]["triggers"]]


SOURCES = {
    "alerts": _rule_expressions,
    "dashboard": _dashboard_expressions,
    "prometheus-adapter": _adapter_expressions,
    "keda": _keda_expressions,
}


def _balanced(expr: str) -> bool:
    depth = {"(": 0, "{": 0, "[": 0}
    pairs = {")": "(", "}": "{", "]": "["}
    for ch in re.sub(r'"[^"]*"', '""', expr):
        if ch in depth:
            depth[ch] += 1
        elif ch in pairs:
            depth[pairs[ch]] -= 1
            if depth[pairs[ch]] < 0:
                return False
    return not any(depth.values())


@pytest.mark.parametrize("source", SOURCES)
def test_queries_use_exported_metrics_and_labels(source: str) -> None:
    exported = all_exported_metrics()
    # Labels Prometheus (prometheus-operator) attaches to every scraped series.
    target_labels = {"namespace", "pod", "job", "service", "endpoint", "instance", "container"}
    for expr in SOURCES[source]():
        assert _balanced(expr), expr
        used = metric_names_in(expr)
        unknown = used - set(exported)
        assert not unknown, f"{source}: {sorted(unknown)} not exported by any service"
        for metric, body in _SELECTOR.findall(expr):
            if EXTERNAL.match(metric):
                continue
            assert metric in exported, f"{source}: {metric}"
            for label, _op, _value in _MATCHER.findall(body):
                assert label in exported[metric] | target_labels, f"{source}: {metric} has no label {label!r}"
        if used:
            labels = set().union(*(exported[m] for m in used)) | target_labels
            for group in _GROUPING.findall(expr):
                for label in filter(None, (g.strip() for g in group.split(","))):
                    assert label in labels, f"{source}: grouping by unknown label {label!r} in {expr}"


def test_label_values_in_alerts_are_real() -> None:
    """The alerts compare labels with values the services really write."""
    from trainer_svc.service.jobs import JobState

    codes = {c.name for c in grpc.StatusCode}
    for expr in _rule_expressions():
        for label, op, value in _MATCHER.findall(expr):
            if label == "state":
                assert value in {s.value for s in JobState}, value
            elif label == "code" and "inference" in expr and op in ("=", "=~"):
                assert set(value.split("|")) <= codes, value
            elif label == "code" and "gateway" in expr:
                assert re.fullmatch(r"[1-5]\.\.|[1-5][0-9]{2}", value), value
            elif label == "outcome":
                assert value in {"success", "failure"}, value


def test_alert_rules_are_complete() -> None:
    rule = find(render("base"), "PrometheusRule", "tfic")
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    names = [a["alert"] for a in alerts]
    assert len(names) == len(set(names))
    for alert in alerts:
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]


def test_dashboard_shows_what_operators_need() -> None:
    dash = _dashboard()
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for p in panels:
        assert set(p["gridPos"]) == {"h", "w", "x", "y"} and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        if p["type"] != "row":
            assert p["targets"] and all(t["expr"] and t["refId"] for t in p["targets"])
    exprs = "\n".join(_dashboard_expressions())
    needed = {
        "throughput": "rate(tfic_inference_requests_total",
        "p50": "histogram_quantile(0.50, sum by (le) (rate(tfic_inference_request_duration_seconds_bucket",
        "p99": "histogram_quantile(0.99, sum by (le) (rate(tfic_inference_request_duration_seconds_bucket",
        "batch size": "tfic_inference_batch_size",
        "queue depth": "tfic_inference_queue_depth",
        "errors": 'code!="OK"',
        "loaded versions": "tfic_inference_loaded_versions",
        "training jobs": "tfic_trainer_jobs",
    }
    missing = [topic for topic, text in needed.items() if text not in exprs]
    assert not missing, missing
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "namespace"} <= variables
    # The ConfigMap Grafana's sidecar loads carries exactly this file.
    configmap = find(render("base"), "ConfigMap", "tfic-grafana-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["tfic.json"]) == dash
