"""The workers' autoscaler, checked by simulation (tests/deploy/autoscaling.py): the ScaledObject
kustomize renders for production, a scripted load, KEDA's metric and the HPA's algorithm.

Each scenario also runs the triggers this project had before (the length of the two Redis lists),
which fail the same checks the way the issue described: once the pods drain the lists the count
falls back and the backlog returns; the bulk list, held near BOT_BULK_QUEUE_LIMIT, never adds a pod.
"""

from __future__ import annotations

import math

import pytest

from services.inference_worker.__main__ import job_slots
from shared.settings import WorkerSettings as Settings
from tests.deploy import manifests as m
from tests.deploy.autoscaling import (
    BULK,
    BURST,
    LOADED,
    MINUTE,
    Autoscaler,
    Phase,
    Workers,
    list_length_variant,
    simulate,
)

# A pod is planned at 70% of its measured capacity (docs/deploy.md, "Capacity").
PLANNED_UTILISATION = 0.7
BURST_START, BURST_END = LOADED


def scaled_object(overlay: str = "production") -> dict:
    return m.named(m.render(f"overlays/{overlay}"), "ScaledObject", "dvach-worker")


@pytest.fixture(scope="module")
def current() -> Autoscaler:
    return Autoscaler.from_scaled_object(scaled_object())


@pytest.fixture(scope="module")
def list_length() -> Autoscaler:
    return list_length_variant(scaled_object())


def test_the_target_is_derived_from_a_pods_slots_and_measured_capacity():
    obj = scaled_object()
    (trigger,) = obj["spec"]["triggers"]
    # The worker pod's shape: INFERENCE_THREADS=2 (deploy/k8s/base/worker.yaml), the default backend.
    slots = job_slots(Settings(inference_threads=2))
    assert float(trigger["metadata"]["threshold"]) == math.floor(slots * PLANNED_UTILISATION)
    assert trigger["type"] == "prometheus" and "dvach_jobs_in_system" in trigger["metadata"]["query"]
    # No gateway reporting is an error (then the fallback), not a zero that would scale down.
    assert trigger["metadata"]["ignoreNullValues"] == "false"
    assert trigger.get("metricType", "AverageValue") == "AverageValue", "KEDA's fallback needs AverageValue"
    assert obj["spec"]["fallback"]["behavior"] == "currentReplicasIfHigher"
    # With at least one replica KEDA's activation and cooldown never act: none is set to pretend they do.
    assert obj["spec"]["minReplicaCount"] >= 1
    assert "cooldownPeriod" not in obj["spec"] and "activationThreshold" not in trigger["metadata"]
    # The query reads this namespace's gateways only.
    assert f'namespace="{obj["metadata"]["namespace"]}"' in trigger["metadata"]["query"]


def test_a_burst_scales_up_drains_the_backlog_and_holds_without_flapping(current):
    result = simulate(current, BURST)
    # Within 5 minutes of the step the queues are empty, and they stay so while the load lasts.
    assert result.max_waiting(BURST_START + 5 * MINUTE, BURST_END) < 1
    # Only jobs of the first minutes, while new pods load their model, outlive their deadline.
    assert sum(result.expired.values()) / result.interactive_offered < 0.02
    assert result.flaps(BURST_START, BURST_END) == []
    # Settled after the overshoot of the backlog: enough pods for the load at the planned utilisation.
    settled = result.replicas(BURST_START + 30 * MINUTE, BURST_END)
    assert len(settled) == 1
    (pods,) = settled
    assert pods * Workers().jobs_per_s * PLANNED_UTILISATION >= 20 * 0.9
    # And back to the minimum when the burst is over.
    assert result.at(len(result.samples) - 1).replicas == current.min_replicas


def test_list_length_triggers_flap_under_the_same_burst(list_length):
    result = simulate(list_length, BURST)
    assert result.flaps(BURST_START, BURST_END), "expected the count to fall back and return"
    assert result.max_waiting(BURST_START + 30 * MINUTE, BURST_END) > 20, "expected the backlog to return"


def dropped_share(result, start: int, end: int, bulk_per_s: float) -> float:
    return (result.at(end).bulk_dropped - result.at(start).bulk_dropped) / (bulk_per_s * (end - start))


def test_random_replies_scale_the_workers(current):
    """The bot sends random (bulk) replies only while at most 20 jobs wait; counting the jobs the
    workers hold, their load still adds pods until the bot no longer has to hold any back."""
    result = simulate(current, BULK)
    late = (BURST_START + 20 * MINUTE, BURST_END)
    assert dropped_share(result, *late, 15) < 0.01
    assert min(result.replicas(*late)) * Workers().jobs_per_s >= 15.5
    assert result.flaps(BURST_START, BURST_END) == []


def test_list_length_triggers_leave_random_replies_to_the_minimum(list_length):
    result = simulate(list_length, BULK)
    late = (BURST_START + 20 * MINUTE, BURST_END)
    assert max(result.replicas(*late)) == list_length.min_replicas
    assert dropped_share(result, *late, 15) > 0.3


def test_a_prometheus_outage_keeps_the_workers_serving(current):
    """Prometheus unreachable for 15 minutes in the middle of the burst: after three failed reads
    KEDA's fallback holds the current count (currentReplicasIfHigher), the backlog stays away."""
    outage = (BURST_START + 30 * MINUTE, BURST_START + 45 * MINUTE)
    result = simulate(current, BURST, metric_outages=[outage])
    before = result.at(outage[0] - 1).replicas
    assert min(result.replicas(*outage)) >= before
    assert result.max_waiting(BURST_START + 5 * MINUTE, BURST_END) < 1


def test_a_static_fallback_would_drop_to_its_replicas_in_the_outage(current):
    """Why currentReplicasIfHigher: KEDA's default (static) would scale to `replicas` (2) while
    Prometheus is away, and the backlog would return."""
    static = Autoscaler(**{**current.__dict__, "fallback_behavior": "static"})
    outage = (BURST_START + 30 * MINUTE, BURST_START + 45 * MINUTE)
    result = simulate(static, BURST, metric_outages=[outage])
    assert min(result.replicas(*outage)) == static.fallback_replicas
    assert result.max_waiting(*outage) > 20


def test_one_pod_gets_help_before_jobs_wait():
    """The base component (min 1): at 4 jobs a second one pod is past its planned 70%; a second
    pod comes while nothing waits (the list-length triggers waited for 5 jobs in the list)."""
    spec = Autoscaler.from_scaled_object(m.named(m.render("components/keda"), "ScaledObject", "dvach-worker"))
    result = simulate(spec, [Phase(5 * MINUTE, 1), Phase(30 * MINUTE, 4)])
    assert spec.min_replicas == 1
    assert result.at(len(result.samples) - 1).replicas == 2
    assert result.max_waiting(0, len(result.samples)) < 1
