"""Metrics, Prometheus and Grafana: every service's metrics parse with Prometheus' own parser and
carry the expected names; promtool accepts the configuration and the alert rules; a real
Prometheus scrapes a gateway and a worker; the dashboard asks only for metrics that exist."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import time

import httpx
import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shared.embedded import RedisServer, free_port
from tests.processes import REPO

DEPLOY = REPO / "deploy"
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool missing (apt-get install prometheus)"
)


SUFFIXES = {
    "counter": ["_total", "_created"],
    "histogram": ["_bucket", "_sum", "_count", "_created"],
    "summary": ["_sum", "_count", "_created"],
    "gauge": [""],
    "info": ["_info"],
    "unknown": [""],
}


def sample_names(text: str) -> set[str]:
    """Names of the series a text exposes, including families declared with no sample yet
    (a labelled counter before its first increment)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {sample.name for sample in family.samples}
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, [""])}
    return names


@pytest.fixture(scope="module")
def metered_redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("metered-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def metered_worker(start_worker, metered_redis):
    """The only worker on its own Redis, so every job of `gateway` below lands on it."""
    port = free_port()
    worker = start_worker({"WORKER_METRICS_PORT": str(port), "REDIS_URL": metered_redis.url}, node="metered@test")
    worker.metrics_url = f"http://127.0.0.1:{port}/metrics"
    return worker


@pytest.fixture(scope="module")
def gateway(start_gateway, metered_worker, metered_redis):
    return start_gateway({"REDIS_URL": metered_redis.url})


@pytest.fixture(scope="module")
def exported_names(gateway, metered_worker) -> set[str]:
    """Every sample name the services export: the gateway and a worker scraped live after a
    reply went through them, the bot's and the scraper's from their metric modules."""
    httpx.post(
        gateway.base_url + "/v1/replies", json={"dialog": ["метрики"], "params": {"max_new_tokens": 4}}, timeout=60
    ).raise_for_status()
    names = sample_names(httpx.get(gateway.base_url + "/metrics", timeout=10).text)
    names |= sample_names(httpx.get(metered_worker.metrics_url, timeout=10).text)
    for module in ("services.bot.metrics", "services.scraper.metrics"):
        importlib.import_module(module)
    names |= sample_names(generate_latest(REGISTRY).decode())
    return names


def test_gateway_metrics_parse_and_carry_expected_names(gateway, exported_names):
    for name in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "dvach_gateway_replies_total",
        "dvach_queue_depth",
        "dvach_broker_up",
    ):
        assert name in exported_names, name


def test_worker_metrics_from_several_processes(metered_worker, exported_names):
    text = httpx.get(metered_worker.metrics_url, timeout=10).text
    names = sample_names(text)
    for name in (
        "dvach_worker_generation_seconds_bucket",
        "dvach_worker_queue_wait_seconds_count",
        "dvach_worker_tokens_per_second_bucket",
        "dvach_worker_generated_tokens_total",
        "dvach_worker_jobs_total",
        "dvach_worker_model_load_seconds",
        "dvach_worker_model_info",
    ):
        assert name in names, name
    info = [s for f in text_string_to_metric_families(text) for s in f.samples if s.name == "dvach_worker_model_info"]
    assert any(s.value == 1 and s.labels["backend"] for s in info)


def test_bot_and_scraper_metrics_follow_conventions(exported_names):
    ours = {n for n in exported_names if n.startswith("dvach_")}
    assert any(n.startswith("dvach_bot_") for n in ours) and any(n.startswith("dvach_scraper_") for n in ours)
    for name in ours:
        assert re.fullmatch(r"dvach_[a-z0-9_]+", name), name
    counters = {
        s.name
        for f in text_string_to_metric_families(generate_latest(REGISTRY).decode())
        if f.type == "counter"
        for s in f.samples
        if not s.name.endswith("_created")
    }
    assert all(name.endswith("_total") for name in counters), counters


@needs_promtool
def test_promtool_accepts_config_and_rules():
    config = subprocess.run(
        ["promtool", "check", "config", str(DEPLOY / "prometheus/prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert config.returncode == 0, config.stdout + config.stderr
    rules = subprocess.run(
        ["promtool", "check", "rules", str(DEPLOY / "prometheus/alerts.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    alerts = {
        r["alert"] for g in yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())["groups"] for r in g["rules"]
    }
    assert {"NoInferenceWorker", "GenerationQueueGrowing", "HighReplyErrorRate", "SlowGeneration"} <= alerts


METRIC_IN_EXPR = re.compile(r"\b((?:dvach|http)_[a-z0-9_]+|up)\b")


def test_dashboard_references_only_exported_metrics(exported_names):
    dashboard = json.loads((DEPLOY / "grafana/dashboards/dvach-bot.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    used = {m for e in exprs for m in METRIC_IN_EXPR.findall(e)} - {"up"}
    missing = sorted(m for m in used if m not in exported_names)
    assert not missing, f"dashboard asks for metrics no service exports: {missing}"
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("queue", "latency", "tokens per second", "per chat", "scraper", "errors"):
        assert topic in titles, topic


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus missing (apt-get install prometheus)")
def test_real_prometheus_scrapes_gateway_and_worker(gateway, metered_worker, tmp_path):
    port = free_port()
    gateway_target = gateway.base_url.removeprefix("http://")
    worker_target = metered_worker.metrics_url.removeprefix("http://").removesuffix("/metrics")
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {"job_name": "gateway", "static_configs": [{"targets": [gateway_target]}]},
            {"job_name": "inference_worker", "static_configs": [{"targets": [worker_target]}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    server = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        httpx.post(
            gateway.base_url + "/v1/replies", json={"dialog": ["скрейп"], "params": {"max_new_tokens": 4}}, timeout=60
        ).raise_for_status()
        queries = {
            'up{job="gateway"}': lambda r: r and float(r[0]["value"][1]) == 1,
            'up{job="inference_worker"}': lambda r: r and float(r[0]["value"][1]) == 1,
            "sum(dvach_worker_generation_seconds_count)": lambda r: r and float(r[0]["value"][1]) >= 1,
            'dvach_queue_depth{queue="generate.interactive"}': bool,
        }
        pending = dict(queries)
        last: dict[str, object] = {}
        deadline = time.monotonic() + 120
        while pending and time.monotonic() < deadline:
            for query, check in list(pending.items()):
                try:
                    body = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": query}, timeout=5).json()
                except (httpx.HTTPError, ValueError):
                    break  # Prometheus is still starting (no answer yet, or a plain-text 503)
                last[query] = body.get("data", {}).get("result")
                if body.get("status") == "success" and check(body["data"]["result"]):
                    del pending[query]
            else:
                time.sleep(0.5)  # Prometheus scrapes every second; ask again on the next round
        assert not pending, f"queries without the expected series: { {q: last.get(q) for q in pending} }"
    finally:
        server.terminate()
        server.wait(20)
