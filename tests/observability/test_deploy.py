"""The Grafana dashboard and the Prometheus alert rules in deploy/ name only metrics the
application registers, and the files have the shapes Grafana and Prometheus load."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from tallybook.observability.metrics import REGISTRY

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\btallybook_[a-z0-9_]+\b")
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def registered() -> set[str]:
    import tallybook.api.app
    import tallybook.entitlements.fast
    import tallybook.jobs.registry as registry
    import tallybook.payments.inbox.processor
    import tallybook.reconciliation.metrics
    import tallybook.webhooks.delivery  # noqa: F401

    registry.scheduled_jobs()
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def _known(name: str, names: set[str]) -> bool:
    if name in names:
        return True
    return any(name.endswith(s) and name[: -len(s)] in names for s in SUFFIXES)


def _exprs_of_dashboard() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "tallybook-dashboard.json").read_text())
    assert dashboard["title"] and dashboard["panels"] and dashboard["uid"]
    exprs = []
    for panel in dashboard["panels"]:
        assert panel["type"] and panel["title"] and panel["gridPos"]
        for target in panel["targets"]:
            exprs.append(target["expr"])
    return exprs


def _alert_rules() -> list[dict[str, object]]:
    document = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    assert isinstance(document, dict) and isinstance(document["groups"], list)
    rules = []
    for group in document["groups"]:
        assert isinstance(group["name"], str) and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert rule["alert"] and rule["expr"] and rule["annotations"]["summary"]
            rules.append(rule)
    return rules


def test_every_metric_in_the_dashboard_and_alerts_is_registered() -> None:
    names = registered()
    used = set()
    for expr in _exprs_of_dashboard() + [str(r["expr"]) for r in _alert_rules()]:
        used.update(METRIC.findall(expr))
    assert used
    missing = sorted(n for n in used if not _known(n, names))
    assert not missing, missing


def test_alerts_cover_every_stage_the_issue_lists() -> None:
    exprs = " ".join(str(r["expr"]) for r in _alert_rules())
    for metric in (
        "tallybook_metering_lag_seconds",
        "tallybook_metering_events_total",
        "tallybook_payments_payments_total",
        "tallybook_payments_inbox_lag_seconds",
        "tallybook_webhook_deliveries_total",
        "tallybook_reconciliation_discrepancies",
        "tallybook_job_run_duration_seconds",
        "tallybook_job_last_success_timestamp_seconds",
    ):
        assert metric in exprs, metric
