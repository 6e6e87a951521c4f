"""What the manifests promise a cluster beyond their schemas: drains never blocked, the network
open only where a pod needs it, the optional webhook component wired end to end, the worker's
limit set for serving."""

from __future__ import annotations

import math
import os
from urllib.parse import urlsplit

import pytest

from shared.settings import BotSettings
from shared.settings.docs import from_variables
from tests.deploy import manifests as m
from tests.deploy.network import Connection, Outside, Pod, allowed, workload_pod

NAMESPACES = {"dev": "dvach-dev", "production": "dvach"}


def replicas(resources, workload: dict) -> int:
    """The replicas a workload runs with at least: its own count, or its autoscaler's minimum."""
    if "replicas" in workload["spec"]:
        return workload["spec"]["replicas"]
    name = workload["metadata"]["name"]
    for obj in m.by_kind(resources, "ScaledObject"):
        if obj["spec"]["scaleTargetRef"]["name"] == name:
            return obj["spec"].get("minReplicaCount", 0)
    for hpa in m.by_kind(resources, "HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"]["name"] == name:
            return hpa["spec"].get("minReplicas", 1)
    return 1  # the API's default


def disruptions_allowed(budget: dict, pods: int) -> int:
    def count(value, round_up: bool) -> int:
        if isinstance(value, str) and value.endswith("%"):
            share = pods * int(value[:-1]) / 100
            return math.ceil(share) if round_up else math.floor(share)
        return int(value)

    spec = budget["spec"]
    if "maxUnavailable" in spec:
        return count(spec["maxUnavailable"], round_up=True)
    return pods - count(spec["minAvailable"], round_up=True)


@pytest.mark.parametrize("overlay", m.OVERLAYS)
def test_no_disruption_budget_blocks_a_drain(overlay):
    """`kubectl drain` evicts a pod only when its budget allows one disruption: with a
    workload at its minimum size, each budget must still allow one, or the drain waits forever."""
    resources = m.render(f"overlays/{overlay}")
    budgets = m.by_kind(resources, "PodDisruptionBudget")
    assert budgets
    for budget in budgets:
        selector = budget["spec"]["selector"]["matchLabels"]
        selected = [w for w in resources if m.pod_spec(w) is not None and selector.items() <= m.pod_labels(w).items()]
        assert selected, budget["metadata"]["name"]
        for workload in selected:
            pods = replicas(resources, workload)
            assert disruptions_allowed(budget, pods) >= 1, (
                f"{overlay}: {budget['metadata']['name']} allows no eviction of {workload['metadata']['name']} "
                f"at {pods} replica(s)"
            )


def test_a_min_available_budget_would_block_dev():
    """The check above is real: the gateway's former budget blocks dev's single gateway."""
    resources = m.render("overlays/dev")
    gateway = m.named(resources, "Deployment", "dvach-gateway")
    assert disruptions_allowed({"spec": {"minAvailable": 1}}, replicas(resources, gateway)) == 0


INTERNET = Outside("93.184.216.34")
PRIVATE_443 = Outside("10.0.0.7")  # another service of the cluster's network, not the internet
REDIS = Outside("10.1.2.3")  # a managed Redis in the VPC
POSTGRES = Outside("10.1.2.4")
DNS = Pod("kube-system", {"k8s-app": "kube-dns"})
PROMETHEUS = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"})
INGRESS_CONTROLLER = Pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
STRANGER = Pod("default", {"app": "something-else"})


def pods(resources, namespace: str) -> dict[str, Pod]:
    found = {}
    for resource in resources:
        if m.pod_spec(resource) is not None:
            found[m.pod_labels(resource)["app.kubernetes.io/component"]] = workload_pod(resource, namespace)
    return found


def test_production_network_allows_what_each_pod_needs_and_nothing_else():
    resources = m.render("overlays/production")
    ns = NAMESPACES["production"]
    p = pods(resources, ns)
    assert {"gateway", "worker", "bot", "scraper", "trainer", "migrate"} <= set(p)
    needs = [
        *((p[name], DNS, 53, "UDP") for name in p),
        (STRANGER, p["gateway"], 8000, "TCP"),
        (INTERNET, p["gateway"], 8000, "TCP"),
        *((p[name], REDIS, 6379, "TCP") for name in ("gateway", "worker", "bot", "trainer")),
        *((p[name], POSTGRES, 5432, "TCP") for name in ("gateway", "worker", "bot", "scraper", "trainer", "migrate")),
        *((p[name], INTERNET, 443, "TCP") for name in ("worker", "bot", "scraper", "trainer")),  # hub, Telegram, 2ch
        (PROMETHEUS, p["worker"], 9101, "TCP"),
        (PROMETHEUS, p["bot"], 9103, "TCP"),
        (PROMETHEUS, p["gateway"], 8000, "TCP"),
    ]
    refused = [
        (p["gateway"], INTERNET, 443, "TCP"),
        (p["migrate"], INTERNET, 443, "TCP"),
        (p["scraper"], REDIS, 6379, "TCP"),
        (p["bot"], PRIVATE_443, 443, "TCP"),
        (p["worker"], INTERNET, 80, "TCP"),
        (p["worker"], p["gateway"], 8000, "TCP"),
        (p["bot"], Outside("8.8.8.8"), 53, "UDP"),  # DNS only through the cluster's
        (STRANGER, p["worker"], 9101, "TCP"),
        (INTERNET, p["bot"], 9103, "TCP"),
        (STRANGER, p["bot"], 8081, "TCP"),
    ]
    assert [c for c in needs if not allowed(resources, ns, Connection(*c))] == []
    assert [c for c in refused if allowed(resources, ns, Connection(*c))] == []


def test_dev_redis_and_postgres_take_only_this_deployments_pods():
    resources = m.render("overlays/dev")
    ns = NAMESPACES["dev"]
    p = pods(resources, ns)
    assert allowed(resources, ns, Connection(p["gateway"], p["redis"], 6379))
    assert allowed(resources, ns, Connection(p["worker"], p["postgres"], 5432))
    assert not allowed(resources, ns, Connection(STRANGER, p["redis"], 6379)), "dev Redis has no password"
    assert not allowed(resources, ns, Connection(p["scraper"], p["redis"], 6379))
    assert not allowed(resources, ns, Connection(p["redis"], INTERNET, 443))


@pytest.fixture(scope="module")
def webhook_resources(tmp_path_factory):
    """Production with components/bot-webhook, as an overlay would add it."""
    folder = tmp_path_factory.mktemp("webhook-overlay")
    k8s = os.path.relpath(m.K8S, folder)
    (folder / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{k8s}/overlays/production]\ncomponents: [{k8s}/components/bot-webhook]\n"
    )
    return m.render(str(folder))


def test_the_webhook_component_routes_telegram_to_every_bot_replica(webhook_resources):
    resources = webhook_resources
    config = from_variables(BotSettings, m.config_map_data(resources))
    assert config.bot_mode == "webhook"
    url = urlsplit(config.bot_webhook_url)
    assert url.scheme == "https" and url.path == config.bot_webhook_path
    bot = m.named(resources, "Deployment", "dvach-bot")
    assert bot["spec"]["replicas"] >= 2
    ports = {p["name"]: p["containerPort"] for p in m.containers(bot, init=False)[0]["ports"]}
    service = m.named(resources, "Service", "dvach-bot-webhook")
    (service_port,) = service["spec"]["ports"]
    assert ports[service_port["targetPort"]] == config.bot_webhook_port
    assert service["spec"]["selector"].items() <= m.pod_labels(bot).items()
    ingress = m.named(resources, "Ingress", "dvach-bot-webhook")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == url.hostname and any(url.hostname in tls["hosts"] for tls in ingress["spec"]["tls"])
    (path,) = rule["http"]["paths"]
    assert path["path"] == config.bot_webhook_path
    assert path["backend"]["service"] == {"name": "dvach-bot-webhook", "port": {"name": service_port["name"]}}
    # The ingress controller reaches the port; nobody else does.
    ns = NAMESPACES["production"]
    pod = workload_pod(bot, ns)
    assert allowed(resources, ns, Connection(INGRESS_CONTROLLER, pod, config.bot_webhook_port))
    assert not allowed(resources, ns, Connection(STRANGER, pod, config.bot_webhook_port))
    # The secret Telegram sends back: read from the Secret, documented (webhook mode refuses to start without).
    env = {e["name"]: e for e in m.containers(bot, init=False)[0]["env"]}
    assert env["BOT_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"]["key"] == "BOT_WEBHOOK_SECRET"
    assert "BOT_WEBHOOK_SECRET" in m.DOCS.read_text()


def test_the_webhook_overlay_validates_against_the_schemas(webhook_resources):
    import kubernetes_validate

    for resource in webhook_resources:
        if resource["kind"] in ("Ingress", "Service", "Deployment", "NetworkPolicy"):
            for version in m.K8S_VERSIONS:
                kubernetes_validate.validate(resource, version, strict=True)


def parse_quantity(value: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return int(float(value[: -len(suffix)]) * factor)
    return int(value)


# Measured peaks (docs/deploy.md, "Resources"): the worker serving 355M int8 with 16 jobs held,
# the int8 conversion of the same checkpoint for CTranslate2 (ONNX Runtime's takes less).
SERVING_PEAK = 801 * 1024**2
CONVERSION_PEAK = 3142 * 1024**2


@pytest.mark.parametrize("overlay", m.OVERLAYS)
def test_the_worker_is_limited_for_serving_and_converts_in_its_init_step(overlay):
    resources = m.render(f"overlays/{overlay}")
    spec = m.pod_spec(m.named(resources, "Deployment", "dvach-worker"))
    (worker,) = spec["containers"]
    limit = parse_quantity(worker["resources"]["limits"]["memory"])
    assert SERVING_PEAK * 1.5 <= limit < CONVERSION_PEAK, "the limit is for serving, with headroom"
    prepare = next(c for c in spec["initContainers"] if c["name"] == "prepare-model")
    assert parse_quantity(prepare["resources"]["limits"]["memory"]) > CONVERSION_PEAK
    # Same volumes where the conversion lands, same model settings.
    assert {v["mountPath"] for v in prepare["volumeMounts"]} == {v["mountPath"] for v in worker["volumeMounts"]}
    assert prepare["envFrom"] == worker["envFrom"]
    assert {e["name"]: e for e in prepare["env"]} == {e["name"]: e for e in worker["env"]}


def test_a_published_version_is_prepared_by_its_own_job():
    """The template that converts a version before activation: the worker's image and command,
    the version the trainer published (TRAIN_PUBLISH, from the same optional ConfigMap)."""
    from shared.settings import TrainOptions
    from shared.settings.docs import env_names

    resources = m.render("overlays/production")
    job = m.named(resources, "CronJob", "dvach-model-prepare")
    assert job["spec"]["suspend"] is True
    (container,) = m.containers(job)
    assert container["image"].split("/")[-1].startswith("worker")
    assert container["command"] == [
        "python",
        "-m",
        "services.inference_worker.prepare",
        "--version",
        "$(TRAIN_PUBLISH)",
    ]
    assert "TRAIN_PUBLISH" in env_names(TrainOptions)
    assert {"configMapRef": {"name": "dvach-train", "optional": True}} in container["envFrom"]
    assert parse_quantity(container["resources"]["limits"]["memory"]) > CONVERSION_PEAK
    pod = workload_pod(job, NAMESPACES["production"])
    assert allowed(resources, "dvach", Connection(pod, POSTGRES, 5432))
    assert not allowed(resources, "dvach", Connection(pod, INTERNET, 443))
