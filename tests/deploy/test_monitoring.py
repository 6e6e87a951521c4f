"""Monitoring that holds in both deployments: the alert rules pass their promtool unit tests (every
alert fires and stays silent in at least one case each), the Kubernetes rules and dashboard are
the compose ones, and the `job` names the rules and the dashboard ask for are the ones both
deployments' scrapes produce."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.deploy import manifests as m
from tools import monitoring_manifests

PROMETHEUS = m.REPO / "deploy" / "prometheus"
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool missing (apt-get install prometheus)"
)


def alert_names() -> set[str]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


@needs_promtool
def test_alert_rules_pass_their_unit_tests():
    done = subprocess.run(
        ["promtool", "test", "rules", str(PROMETHEUS / "alerts_test.yml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_firing_and_a_silent_unit_test():
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())
    assert tests["rule_files"] == ["alerts.yml"]
    fires, silent = set(), set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    assert alert_names() - fires == set(), "alerts never shown to fire"
    assert alert_names() - silent == set(), "alerts never shown to stay silent"


def test_kubernetes_rules_and_dashboard_are_generated_from_the_compose_ones():
    stale = monitoring_manifests.stale_files()
    assert not stale, f"run `python -m tools.monitoring_manifests`: {[str(p) for p in stale]}"
    rule = m.named(m.render("overlays/production"), "PrometheusRule", "dvach-bot")
    assert rule["spec"]["groups"] == yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    config_map = m.named(m.render("overlays/production"), "ConfigMap", "dvach-grafana-dvach-bot")
    dashboard = json.loads((m.REPO / "deploy" / "grafana" / "dashboards" / "dvach-bot.json").read_text())
    assert json.loads(config_map["data"]["dvach-bot.json"]) == dashboard
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"


JOB = re.compile(r'\bjob="([a-z_]+)"')


def jobs_asked_for() -> set[str]:
    texts = [(PROMETHEUS / "alerts.yml").read_text()]
    texts.append((m.REPO / "deploy" / "grafana" / "dashboards" / "dvach-bot.json").read_text().replace('\\"', '"'))
    texts += [
        t["metadata"]["query"]
        for t in m.named(m.render("overlays/production"), "ScaledObject", "dvach-worker")["spec"]["triggers"]
    ]
    return {job for text in texts for job in JOB.findall(text)}


def test_job_names_asked_for_are_the_ones_the_scrapes_produce():
    asked = jobs_asked_for()
    assert {"inference_worker", "gateway"} <= asked
    compose = {job["job_name"] for job in yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"]}
    assert asked <= compose
    kubernetes = set()
    for monitor in m.by_kind(m.render("overlays/production"), "PodMonitor"):
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            relabel = [r for r in endpoint.get("relabelings", []) if r.get("targetLabel") == "job"]
            assert relabel, f"{monitor['metadata']['name']} keeps the operator's job name (namespace/name)"
            kubernetes.add(relabel[-1]["replacement"])
    assert asked <= kubernetes, f"no PodMonitor gives the job(s) {asked - kubernetes}"
