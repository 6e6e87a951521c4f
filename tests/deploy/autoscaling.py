"""A simulation of the worker autoscaler, to check a ScaledObject before a cluster does.

A scripted load (jobs a second over time) runs through a model of the system, and the ScaledObject
as rendered by kustomize decides the replicas, through KEDA's metric and the HorizontalPodAutoscaler
algorithm as Kubernetes implements it (pkg/controller/podautoscaler in kubernetes/kubernetes):

- the metric: KEDA's `prometheus` trigger reads `dvach_jobs_in_system` (waiting + held) as the
  gateway exported it (refreshed every 5 s) and Prometheus scraped it (every 15 s); the old
  `redis` triggers read the lists' length at the HPA's sync. Either is an External metric with an
  AverageValue target: desired = ceil(value / target), unless value / (target x replicas) is
  within the 10% tolerance (GetExternalPerPodMetricReplicas); the largest of the triggers wins;
- KEDA's fallback: after more than `failureThreshold` failed reads it returns target x replicas,
  where replicas is `fallback.replicas` or, for currentReplicasIfHigher, the current count if
  higher; before that a failed read leaves the count as it is (the HPA does not act);
- the HPA every 15 s: stabilization (the lowest recommendation of the scale-up window, the highest
  of the scale-down window: stabilizeRecommendationWithBehaviors), then the rate policies over their
  periods (convertDesiredReplicasWithBehaviorRate), then min and max;
- the workers: a pod is ready `startup_s` after it is created (model loaded), holds up to `slots`
  jobs taken from the queues (interactive first, oldest first), and finishes them at
  `jobs_per_s x held / slots` a second (the measured rate at full slots: the per-job time is the
  same at any occupancy). A job whose deadline (REPLY_TIMEOUT_S after it was sent) has passed when
  a worker takes it is dropped unrun, as the worker does; its caller has given up. A pod removed by
  a scale-down takes no new job and finishes the ones it holds (warm shutdown);
- the bot sends no random (bulk) reply while more than `bulk_queue_limit` jobs wait
  (BOT_BULK_QUEUE_LIMIT): those arrivals are dropped, as the bot skips them.

Time moves in steps of one second; everything is deterministic. The scenarios of
tests/deploy/test_autoscaling.py, summed up for docs/deploy.md:

    .venv/bin/python -m tests.deploy.autoscaling
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

HPA_SYNC_S = 15
HPA_TOLERANCE = 0.1
GATEWAY_REFRESH_S = 5  # services/gateway/queue_metrics.py
SCRAPE_INTERVAL_S = 15  # the PodMonitor's interval


@dataclass(frozen=True)
class Phase:
    """`seconds` of load: jobs a second for the interactive and the bulk queue."""

    seconds: int
    interactive_per_s: float
    bulk_per_s: float = 0.0


@dataclass(frozen=True)
class Workers:
    slots: int = 16  # INFERENCE_SLOTS: lanes x INFERENCE_MAX_BATCH
    jobs_per_s: float = 4.55  # one pod at full slots (docs/deploy.md, measured)
    startup_s: int = 90  # a new pod: scheduled, started, model loaded and warmed up
    grace_s: int = 120  # terminationGracePeriodSeconds


@dataclass
class Pod:
    created: int
    ready_at: int
    held: float = 0.0
    terminating_since: int | None = None


@dataclass(frozen=True)
class Trigger:
    kind: str  # "in_system" (prometheus), "interactive" or "bulk" (redis list length)
    target: float


@dataclass(frozen=True)
class Policy:
    kind: str  # Pods or Percent
    value: int
    period_s: int


@dataclass(frozen=True)
class Rules:
    window_s: int
    policies: tuple[Policy, ...]
    select: str = "Max"


@dataclass(frozen=True)
class Autoscaler:
    """What the simulation needs of a ScaledObject."""

    min_replicas: int
    max_replicas: int
    triggers: tuple[Trigger, ...]
    scale_up: Rules
    scale_down: Rules
    fallback_threshold: int | None = None
    fallback_replicas: int = 0
    fallback_behavior: str = "static"

    @classmethod
    def from_scaled_object(cls, obj: dict[str, Any]) -> Autoscaler:
        spec = obj["spec"]
        triggers = []
        for trigger in spec["triggers"]:
            meta = trigger["metadata"]
            if trigger["type"] == "prometheus":
                if "dvach_jobs_in_system" not in meta["query"]:
                    raise ValueError(f"no model of the query {meta['query']!r}")
                triggers.append(Trigger("in_system", float(meta["threshold"])))
            elif trigger["type"] == "redis":
                kind = {"generate.interactive": "interactive", "generate.bulk": "bulk"}[meta["listName"]]
                triggers.append(Trigger(kind, float(meta["listLength"])))
            else:
                raise ValueError(f"no model of a {trigger['type']} trigger")
        behavior = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior", {})

        def rules(direction: str, default_window: int) -> Rules:
            given = behavior.get(direction, {})
            policies = tuple(
                Policy(p["type"], int(p["value"]), int(p["periodSeconds"])) for p in given.get("policies", [])
            )
            if not policies:  # the HPA's defaults
                policies = (
                    (Policy("Percent", 100, 15), Policy("Pods", 4, 15))
                    if direction == "scaleUp"
                    else (Policy("Percent", 100, 15),)
                )
            return Rules(
                int(given.get("stabilizationWindowSeconds", default_window)), policies, given.get("selectPolicy", "Max")
            )

        fallback = spec.get("fallback")
        return cls(
            min_replicas=int(spec.get("minReplicaCount", 0)),
            max_replicas=int(spec.get("maxReplicaCount", 100)),
            triggers=tuple(triggers),
            scale_up=rules("scaleUp", 0),
            scale_down=rules("scaleDown", 300),
            fallback_threshold=int(fallback["failureThreshold"]) if fallback else None,
            fallback_replicas=int(fallback["replicas"]) if fallback else 0,
            fallback_behavior=fallback.get("behavior", "static") if fallback else "static",
        )


@dataclass
class Sample:
    t: int
    replicas: int  # the Deployment's spec.replicas
    ready: int
    waiting: float
    held: float
    bulk_dropped: float  # so far


@dataclass
class Result:
    samples: list[Sample] = field(default_factory=list)
    changes: list[tuple[int, int, int]] = field(default_factory=list)  # (t, from, to)
    interactive_offered: float = 0.0
    bulk_offered: float = 0.0
    bulk_dropped: float = 0.0  # random replies the bot did not send: the queues were long
    expired: dict[str, float] = field(default_factory=lambda: {"interactive": 0.0, "bulk": 0.0})
    done: float = 0.0

    def at(self, t: int) -> Sample:
        return self.samples[t]

    def flaps(self, start: int, end: int) -> list[tuple[int, int]]:
        """Scale-downs followed by a scale-up, both in [start, end): the count went down and had to
        come back (flapping). An overshoot settling down is not one."""
        inside = [(t, before, after) for t, before, after in self.changes if start <= t < end]
        return [(t1, t2) for (t1, a1, b1), (t2, a2, b2) in itertools.pairwise(inside) if b1 < a1 and b2 > a2]

    def max_waiting(self, start: int, end: int) -> float:
        return max(s.waiting for s in self.samples[start:end])

    def replicas(self, start: int, end: int) -> set[int]:
        return {s.replicas for s in self.samples[start:end]}


class HorizontalPodAutoscaler:
    """The HPA controller's replica computation with `behavior` (Kubernetes 1.23+)."""

    def __init__(self, spec: Autoscaler):
        self.spec = spec
        self.recommendations: list[tuple[int, int]] = []  # (t, unstabilized recommendation)
        self.up_events: list[tuple[int, int]] = []  # (t, replicas added)
        self.down_events: list[tuple[int, int]] = []

    def desired_from_metrics(self, values: dict[str, float], current: int) -> int:
        proposals = []
        for trigger in self.spec.triggers:
            usage = values[trigger.kind]
            ratio = usage / (trigger.target * current)
            proposals.append(current if abs(1.0 - ratio) <= HPA_TOLERANCE else math.ceil(usage / trigger.target))
        return max(proposals)

    def _stabilize(self, t: int, desired: int, current: int) -> int:
        up = down = desired
        for when, recommendation in self.recommendations:
            if when > t - self.spec.scale_up.window_s:
                up = min(up, recommendation)
            if when > t - self.spec.scale_down.window_s:
                down = max(down, recommendation)
        keep = max(self.spec.scale_up.window_s, self.spec.scale_down.window_s)
        self.recommendations = [(w, r) for w, r in self.recommendations if w > t - keep]
        self.recommendations.append((t, desired))
        return min(max(current, up), down)

    @staticmethod
    def _changed(events: list[tuple[int, int]], t: int, period_s: int) -> int:
        return sum(n for when, n in events if when > t - period_s)

    def _limit(self, t: int, desired: int, current: int) -> int:
        if desired > current:
            rules, pick = self.spec.scale_up, (min if self.spec.scale_up.select == "Min" else max)
            limit = None
            for policy in rules.policies:
                start = (
                    current
                    - self._changed(self.up_events, t, policy.period_s)
                    + self._changed(self.down_events, t, policy.period_s)
                )
                proposed = (
                    start + policy.value if policy.kind == "Pods" else math.ceil(start * (1 + policy.value / 100))
                )
                limit = proposed if limit is None else pick(limit, proposed)
            limit = max(limit or current, current)
            return min(desired, limit, self.spec.max_replicas)
        if desired < current:
            rules, pick = self.spec.scale_down, (max if self.spec.scale_down.select == "Min" else min)
            limit = None
            for policy in rules.policies:
                start = (
                    current
                    - self._changed(self.up_events, t, policy.period_s)
                    + self._changed(self.down_events, t, policy.period_s)
                )
                proposed = start - policy.value if policy.kind == "Pods" else int(start * (1 - policy.value / 100))
                limit = proposed if limit is None else pick(limit, proposed)
            limit = min(limit if limit is not None else current, current)
            return max(desired, limit, self.spec.min_replicas)
        return desired

    def sync(self, t: int, values: dict[str, float] | None, current: int) -> int:
        """The new replica count at `t` (`values` None: the metric could not be read)."""
        if current > self.spec.max_replicas:
            desired = self.spec.max_replicas
        elif current < self.spec.min_replicas:
            desired = self.spec.min_replicas
        elif values is None:
            return current  # FailedGetExternalMetric: no scaling
        else:
            desired = self.desired_from_metrics(values, current)
            desired = self._stabilize(t, desired, current)
            desired = self._limit(t, desired, current)
        if desired > current:
            self.up_events.append((t, desired - current))
        elif desired < current:
            self.down_events.append((t, current - desired))
        return desired


class Queue:
    """A Redis list of jobs as (sent at, how many) slices, oldest first."""

    def __init__(self) -> None:
        self.slices: deque[list[float]] = deque()

    def __len__(self) -> int:  # pragma: no cover - the length is fractional: use size
        raise TypeError("use size")

    @property
    def size(self) -> float:
        return sum(amount for _, amount in self.slices)

    def push(self, t: int, amount: float) -> None:
        if amount > 0:
            self.slices.append([t, amount])

    def take(self, t: int, wanted: float, deadline_s: float) -> tuple[float, float]:
        """Up to `wanted` jobs still within their deadline, oldest first: (taken, expired)."""
        taken = expired = 0.0
        while self.slices and taken < wanted:
            sent, amount = self.slices[0]
            if t - sent > deadline_s:
                expired += amount
                self.slices.popleft()
                continue
            step = min(amount, wanted - taken)
            taken += step
            if step >= amount:
                self.slices.popleft()
            else:
                self.slices[0][1] = amount - step
        return taken, expired


class Simulation:
    """The system of the module docstring, one second per `step`."""

    def __init__(
        self,
        spec: Autoscaler,
        workers: Workers,
        *,
        bulk_queue_limit: int,
        reply_timeout_s: float,
        initial_replicas: int,
        metric_outages: Sequence[tuple[int, int]],
    ):
        self.spec = spec
        self.workers = workers
        self.bulk_queue_limit = bulk_queue_limit
        self.reply_timeout_s = reply_timeout_s
        self.metric_outages = metric_outages
        self.hpa = HorizontalPodAutoscaler(spec)
        self.replicas = initial_replicas
        self.pods = [Pod(created=-workers.startup_s, ready_at=0) for _ in range(initial_replicas)]  # warm
        self.queues = {"interactive": Queue(), "bulk": Queue()}
        self.gateway_value = self.scraped_value = 0.0
        self.failures = 0
        self.result = Result()

    def arrive(self, t: int, phase: Phase) -> None:
        """Jobs sent this second; the bot holds random replies back while the queues are long."""
        self.queues["interactive"].push(t, phase.interactive_per_s)
        self.result.interactive_offered += phase.interactive_per_s
        self.result.bulk_offered += phase.bulk_per_s
        if self.waiting() > self.bulk_queue_limit:
            self.result.bulk_dropped += phase.bulk_per_s
        else:
            self.queues["bulk"].push(t, phase.bulk_per_s)

    def waiting(self) -> float:
        return self.queues["interactive"].size + self.queues["bulk"].size

    def fill_slots(self, t: int) -> None:
        """Ready pods fill their free slots, interactive jobs first."""
        for pod in self.pods:
            if pod.terminating_since is None and t >= pod.ready_at:
                for name in ("interactive", "bulk"):
                    taken, expired = self.queues[name].take(t, self.workers.slots - pod.held, self.reply_timeout_s)
                    pod.held += taken
                    self.result.expired[name] += expired

    def export_metric(self, t: int, held: float) -> None:
        """The gateway's refresh, then Prometheus' scrape of it."""
        if t % GATEWAY_REFRESH_S == 0:
            self.gateway_value = self.waiting() + held
        if t % SCRAPE_INTERVAL_S == 0:
            self.scraped_value = self.gateway_value

    def work(self, t: int) -> None:
        """Every held job progresses at the per-job rate; stopping pods leave once done (or killed)."""
        for pod in self.pods:
            finished = min(pod.held, self.workers.jobs_per_s * pod.held / self.workers.slots)
            pod.held -= finished
            self.result.done += finished
        self.pods = [
            p
            for p in self.pods
            if p.terminating_since is None or (p.held > 0.01 and t - p.terminating_since < self.workers.grace_s)
        ]

    def metric_values(self, t: int, current: int) -> dict[str, float] | None:
        """What the HPA reads through KEDA: None while a failed read is not yet a fallback."""
        values = {
            "in_system": self.scraped_value,
            "interactive": self.queues["interactive"].size,
            "bulk": self.queues["bulk"].size,
        }
        outage = any(start <= t < stop for start, stop in self.metric_outages)
        if not outage or not any(trigger.kind == "in_system" for trigger in self.spec.triggers):
            self.failures = 0
            return values
        self.failures += 1
        if self.spec.fallback_threshold is None or self.failures <= self.spec.fallback_threshold:
            return None
        fallback = self.spec.fallback_replicas
        if self.spec.fallback_behavior == "currentReplicasIfHigher":
            fallback = max(current, fallback)
        elif self.spec.fallback_behavior == "currentReplicas":
            fallback = current
        return {"in_system": self.spec.triggers[0].target * fallback, "interactive": 0.0, "bulk": 0.0}

    def autoscale(self, t: int) -> None:
        current = sum(1 for p in self.pods if p.terminating_since is None)
        new = self.hpa.sync(t, self.metric_values(t, current), current)
        if new != current:
            self.result.changes.append((t, current, new))
        if new > current:
            self.pods += [Pod(created=t, ready_at=t + self.workers.startup_s) for _ in range(new - current)]
        elif new < current:
            # The ReplicaSet removes pods that are not ready first, then the newest.
            active = sorted(
                (p for p in self.pods if p.terminating_since is None), key=lambda p: (t >= p.ready_at, -p.created)
            )
            for pod in active[: current - new]:
                pod.terminating_since = t
        self.replicas = new

    def step(self, t: int, phase: Phase) -> None:
        self.arrive(t, phase)
        self.fill_slots(t)
        held = sum(p.held for p in self.pods)
        waiting = self.waiting()
        self.export_metric(t, held)
        self.work(t)
        if t % HPA_SYNC_S == HPA_SYNC_S - 1:
            self.autoscale(t)
        ready = sum(1 for p in self.pods if p.terminating_since is None and t >= p.ready_at)
        self.result.samples.append(Sample(t, self.replicas, ready, waiting, held, self.result.bulk_dropped))


def simulate(
    spec: Autoscaler,
    phases: Sequence[Phase],
    workers: Workers = Workers(),
    *,
    bulk_queue_limit: int = 20,
    reply_timeout_s: float = 30.0,
    initial_replicas: int | None = None,
    metric_outages: Sequence[tuple[int, int]] = (),
) -> Result:
    """Run `phases` through the system scaled by `spec`, a sample a second; `metric_outages` are
    [start, end) seconds during which the trigger's source (Prometheus) cannot be read."""
    simulation = Simulation(
        spec,
        workers,
        bulk_queue_limit=bulk_queue_limit,
        reply_timeout_s=reply_timeout_s,
        initial_replicas=initial_replicas or spec.min_replicas,
        metric_outages=metric_outages,
    )
    t = 0
    for phase in phases:
        for _ in range(phase.seconds):
            simulation.step(t, phase)
            t += 1
    return simulation.result


MINUTE = 60
# 10 quiet minutes, an hour at ten times the load, 40 quiet minutes.
BURST = (Phase(10 * MINUTE, 2), Phase(60 * MINUTE, 20), Phase(40 * MINUTE, 2))
# The same hour of random replies only (15 a second offered by the bot, 0.5 mentions a second).
BULK = (Phase(10 * MINUTE, 0.5, 0), Phase(60 * MINUTE, 0.5, 15), Phase(20 * MINUTE, 0.5, 0))
LOADED = (10 * MINUTE, 70 * MINUTE)  # the hour of load in both


def list_length_variant(scaled_object: dict[str, Any]) -> Autoscaler:
    """`scaled_object` with the triggers this project had before issue 19: a redis trigger per
    list (interactive 4, bulk 16), no fallback; the same bounds and HPA behaviour."""
    spec = dict(scaled_object["spec"])
    spec["triggers"] = [
        {"type": "redis", "metadata": {"listName": "generate.interactive", "listLength": "4"}},
        {"type": "redis", "metadata": {"listName": "generate.bulk", "listLength": "16"}},
    ]
    spec.pop("fallback", None)
    return Autoscaler.from_scaled_object({**scaled_object, "spec": spec})


def summary(spec: Autoscaler, phases: Sequence[Phase]) -> dict[str, Any]:
    """The figures docs/deploy.md quotes for one scenario."""
    result = simulate(spec, phases)
    start, end = LOADED
    settled_from = start + 30 * MINUTE
    offered = result.interactive_offered + result.bulk_offered
    bulk = sum(p.bulk_per_s * p.seconds for p in phases if p.bulk_per_s)
    return {
        "peak pods": max(result.replicas(start, end)),
        "pods, last 30 min of load": "-".join(
            map(str, sorted({min(result.replicas(settled_from, end)), max(result.replicas(settled_from, end))}))
        ),
        "flaps": len(result.flaps(start, end)),
        "most waiting, last 30 min": round(result.max_waiting(settled_from, end)),
        "expired %": round(100 * sum(result.expired.values()) / offered, 1),
        "random replies held back %": round(100 * result.bulk_dropped / bulk, 1) if bulk else "-",
    }


def main() -> None:
    from tests.deploy import manifests

    obj = manifests.named(manifests.render("overlays/production"), "ScaledObject", "dvach-worker")
    rows = []
    for name, phases in (("burst 2 -> 20 jobs/s", BURST), ("random replies 15/s", BULK)):
        for trigger, spec in (
            ("jobs in system", Autoscaler.from_scaled_object(obj)),
            ("list length (before)", list_length_variant(obj)),
        ):
            rows.append({"scenario": name, "trigger": trigger, **summary(spec, phases)})
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
